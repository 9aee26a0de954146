"""The local VLA and its data: the model builds from its config and round-trips through
save_pretrained/from_pretrained, a few training steps lower the loss, the generated instructions
name what the rendered scene shows, and the packaged checkpoint (and the scripted baseline) find
the named object in held-out scenes."""
import re
import time

import cv2
import numpy as np
import pytest
import torch

from neurovla_ros.cortex import data as D
from neurovla_ros.cortex import language, scripted
from neurovla_ros.cortex.backends import CHECKPOINT
from neurovla_ros.cortex.camera import Camera
from neurovla_ros.cortex.model import (
    NeuroVLAConfig,
    NeuroVLAModel,
    WordTokenizer,
    decode,
    locate,
    preprocess,
    targets,
)

TINY = dict(vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=32, text_layers=1,
            text_heads=2, head_hidden=32)


@pytest.fixture(scope='module')
def train_scenes():
    return D.generate(24, heldout=False, seed=77, scenes_per_world=4)


@pytest.fixture(scope='module')
def heldout_scenes():
    return D.generate(40, heldout=True, seed=78, scenes_per_world=10, repaint=False)


def test_tokenizer_is_word_level_with_unknown_words():
    tok = WordTokenizer(['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'touch', 'red', 'cube'])
    out = tok(['Touch the RED cube!', 'red'])
    assert out['input_ids'].tolist() == [[2, 4, 1, 5, 6, 3], [2, 5, 3, 0, 0, 0]]
    assert out['attention_mask'].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]


def test_config_validates_its_fields():
    with pytest.raises(ValueError, match='multiple of patch_size'):
        NeuroVLAConfig(image_size=(100, 240), patch_size=12)
    with pytest.raises(ValueError, match='crop'):
        NeuroVLAConfig(crop=(0, 0, 0, 240))


def test_model_builds_from_config_and_round_trips(tmp_path, train_scenes):
    torch.manual_seed(0)
    m = NeuroVLAModel(NeuroVLAConfig(**TINY, decode_mode='offset')).eval()
    with torch.no_grad():      # away from the initial values: every weight has to travel
        for prm in m.parameters():
            prm.add_(torch.randn_like(prm) * 0.1)
    x = preprocess(train_scenes['images'][:2], m.config, cropped=True)
    t = m.tokenizer(['touch the red cube', 'go to the ball'])
    with torch.no_grad():
        out = m(x, **t)
    rows, cols = m.config.grid
    assert out[0].shape == (2, rows * cols) and out[1].shape == (2, rows * cols, 2)
    m.save_pretrained(tmp_path)
    m2 = NeuroVLAModel.from_pretrained(tmp_path).eval()
    assert m2.config.vocab == m.config.vocab and m2.config.crop == m.config.crop
    assert m2.config.decode_mode == 'offset'
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    with torch.no_grad():
        out2 = m2(x, **t)
    for a, b in zip(out, out2):
        assert torch.allclose(a, b, atol=1e-6)


def test_frozen_inference_graph_gives_the_eager_outputs(train_scenes):
    """The cortex plans through a traced, frozen graph of the image path: same pointer as the
    module-by-module call, eager again for other batch sizes and after training resumes."""
    torch.manual_seed(1)
    m = NeuroVLAModel(NeuroVLAConfig(**TINY)).eval()
    x = preprocess(train_scenes['images'][:2], m.config, cropped=True)
    t1, t2 = m.tokenizer(['touch the red cube']), m.tokenizer(['touch the red cube', 'a ball'])
    with torch.no_grad():
        eager1, eager2 = m(x[:1], **t1), m(x, **t2)
    assert m.freeze_for_inference() and m.frozen
    for text in ('touch the red cube', 'go to the green ball'):   # a new sentence as well
        t = m.tokenizer([text])
        with torch.no_grad():
            ref = m(x[1:], **t)
        got = m.infer(x[1:], **t)
        for a, b in zip(ref, got):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    for a, b in zip(eager1, m.infer(x[:1], **t1)):
        assert torch.allclose(a, b, atol=1e-5)
    for a, b in zip(eager2, m.infer(x, **t2)):     # batch of two: eager, same values
        assert torch.equal(a, b)
    m.train()
    assert not m.frozen


def test_pointer_targets_and_decoding_are_consistent():
    cfg = NeuroVLAConfig(**TINY)
    uv = np.array([[103.0, 121.0], [251.3, 95.2]])
    patch, off, soft = targets(uv, cfg)
    assert np.allclose(soft.sum(1), 1) and np.all(soft.argmax(1) == patch)
    n = cfg.grid[0] * cfg.grid[1]
    logits = torch.full((2, n), -30.0)
    logits[torch.arange(2), torch.from_numpy(patch)] = 0.0
    offset = torch.zeros((2, n, 2))
    offset[torch.arange(2), torch.from_numpy(patch)] = torch.from_numpy(off)
    got, _, conf = decode(logits, offset, torch.zeros((2, n)), cfg, mode='offset')
    assert np.allclose(got, uv, atol=1e-4) and np.all(conf > 0.99)
    # soft-argmax of the Gaussian target itself recovers the pixel to a fraction of a patch
    got, _, _ = decode(torch.log(torch.from_numpy(soft)), offset, torch.zeros((2, n)), cfg,
                       mode='softargmax')
    assert np.all(np.abs(got - uv) < 0.25 * cfg.patch_size)


def test_a_few_training_steps_lower_the_loss(train_scenes):
    torch.manual_seed(0)
    m = NeuroVLAModel(NeuroVLAConfig(**TINY))
    rng = np.random.default_rng(0)
    idx = np.arange(16)
    texts, uv = [], []
    for i in idx:
        j, text = D.instruction_for(train_scenes, int(i), rng)
        texts.append(text)
        uv.append(train_scenes['uv'][i, j])
    x = preprocess(train_scenes['images'][idx], m.config, cropped=True)
    t = m.tokenizer(texts)
    _, _, soft = targets(np.asarray(uv), m.config)
    soft = torch.from_numpy(soft)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        logits, _, _ = m(x, **t)
        loss = torch.nn.functional.cross_entropy(logits, soft)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


def hue_at(image, u, v):
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return hsv[int(round(v)), int(round(u))]


def test_generated_instructions_and_labels_match_the_scene(train_scenes, heldout_scenes):
    top, left, _, _ = D.CROP
    rng = np.random.default_rng(1)
    seen_colour, checked, same_colour_scenes = 0, 0, 0
    for data, heldout in ((train_scenes, False), (heldout_scenes, True)):
        for i in range(len(data['count'])):
            objs = D.scene_objects(data, i)
            named = [(o['colour'], o['shape']) for o in objs if o['colour'] != D.UNNAMED]
            combos = set(named)
            assert len(combos) == len(named)             # never two identical named objects
            if not heldout:
                assert not combos & D.HELDOUT_COMBOS      # held-out combinations never trained
                named = [o['colour'] for o in objs if o['colour'] != D.UNNAMED]
                same_colour_scenes += len(set(named)) < len(named)
            for _ in range(5):
                j, text = D.instruction_for(data, i, rng, heldout=heldout)
                assert language.resolve(language.parse(text), objs) == [j], (text, objs)
                templates = language.HELDOUT_TEMPLATES if heldout else language.TRAIN_TEMPLATES
                assert any(re.fullmatch(re.escape(t).replace(r'\{obj\}', '.+'), text)
                           for t in templates), text
            # the labelled pixel shows the object's colour (unless the arm hides it)
            for j, o in enumerate(objs):
                if o['colour'] == D.UNNAMED:
                    continue
                u, v = data['uv'][i, j]
                h, s, val = hue_at(data['images'][i], u - left, v - top)
                checked += 1
                if o['colour'] == 'white':
                    seen_colour += s < 60 and val > 150
                else:
                    d = abs(int(h) - scripted.COLOUR_HUES[o['colour']])
                    seen_colour += min(d, 180 - d) <= 10 and s > 120
    assert seen_colour >= 0.85 * checked, (seen_colour, checked)
    assert same_colour_scenes >= 2        # distractors sharing the target's colour exist
    held = [(str(heldout_scenes['colour'][i, j]), str(heldout_scenes['shape'][i, j])) in
            D.HELDOUT_COMBOS for i in range(40) for j in range(heldout_scenes['count'][i])]
    assert any(held)


def test_packaged_checkpoint_finds_named_objects_in_held_out_scenes(heldout_scenes):
    model = NeuroVLAModel.from_pretrained(CHECKPOINT).eval()
    torch.set_num_threads(1)
    cam = Camera.from_info(heldout_scenes['k'], 320, 240)
    rng = np.random.default_rng(5)
    errs, times = [], []
    for i in range(len(heldout_scenes['count'])):
        j, text = D.instruction_for(heldout_scenes, i, rng, heldout=True)
        t0 = time.perf_counter()
        centre, _ = locate(model, heldout_scenes['images'][i:i + 1], [text], cam, cropped=True)
        times.append(time.perf_counter() - t0)
        errs.append(np.linalg.norm(centre[0, :2] - heldout_scenes['position'][i, j, :2]))
    errs = np.asarray(errs)
    assert np.mean(errs < 0.03) >= 0.8, np.round(errs, 3)
    assert np.median(times) < 0.1


def test_scripted_baseline_finds_named_objects(heldout_scenes):
    cam = Camera.from_info(heldout_scenes['k'], 320, 240)
    loc = scripted.ScriptedLocator(cam)
    top, left, ch, cw = D.CROP
    rng = np.random.default_rng(6)
    hits = 0
    for i in range(len(heldout_scenes['count'])):
        img = np.zeros((240, 320, 3), np.uint8)
        img[top:top + ch, left:left + cw] = heldout_scenes['images'][i]
        j, text = D.instruction_for(heldout_scenes, i, rng, heldout=True)
        centre, conf, note = loc.locate(img, language.parse(text), heldout_scenes['q'][i])
        hits += centre is not None and np.linalg.norm(
            centre[:2] - heldout_scenes['position'][i, j, :2]) < 0.03
    assert hits >= 0.7 * len(heldout_scenes['count'])


def test_colour_and_shape_streams_read_only_their_own_words():
    """The pointer is the sum of a colour score and a shape score; the shape stream's sentence
    never sees colour words and the colour stream's never sees shape words (compositionality:
    a novel colour-shape pair is scored as colour plus shape)."""
    torch.manual_seed(0)
    m = NeuroVLAModel(NeuroVLAConfig(**TINY)).eval()

    def sentences(text):
        t = m.tokenizer([text])
        with torch.no_grad():
            return (m.sentence(t['input_ids'], t['attention_mask'], m.shape_ids),
                    m.sentence(t['input_ids'], t['attention_mask'], m.colour_ids))
    red_cube, blue_cube, red_ball = (sentences(s) for s in
                                     ('touch the red cube', 'touch the blue cube',
                                      'touch the red ball'))
    assert torch.allclose(red_cube[1], blue_cube[1])       # shape stream: colour-blind
    assert not torch.allclose(red_cube[1], red_ball[1])
    assert torch.allclose(red_cube[0], red_ball[0])        # colour stream: shape-blind
    assert not torch.allclose(red_cube[0], blue_cube[0])
