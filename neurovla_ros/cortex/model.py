"""neurovla's own vision-language-action model: a pointer VLA built from transformers classes.

ROS-free. Image encoder: a small ``ViTModel`` over the image's luminance (shapes) plus a
per-patch linear colour embedding added to its output; text encoder: a small ``BertModel`` over a
word tokenizer built in code; both configured from code (random init, trained from scratch by
``neurovla train cortex``; no hub access). The action head fuses them (cross-attention from image
patches to words, then FiLM by the sentence embedding) and *points*: a logit per image patch for
"the named object is here", a sub-patch offset and the object's centre height. The cortex turns
the pointed pixel into a 3-D goal by intersecting its camera ray with the horizontal plane at
that height (``camera.Camera.backproject``), so the model needs no knowledge of the robot.

Saved and loaded with ``save_pretrained`` / ``from_pretrained`` from a local directory (config.json
with the vocabulary and the image crop, model.safetensors).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
    ViTModel,
)
from transformers.utils import logging as hf_logging

from . import language

SPECIAL = ('[PAD]', '[UNK]', '[CLS]', '[SEP]')
LUMA = (0.299, 0.587, 0.114)   # ITU-R BT.601 luminance weights


def default_vocab() -> list[str]:
    """Every word of the training templates, references and colour/shape synonyms."""
    found = set()
    for text in (*language.TRAIN_TEMPLATES, *(r for r, _ in language.TRAIN_REFERENCES)):
        found.update(language.words(text.replace('{obj}', ' ').replace('{colour}', ' ')
                                    .replace('{shape}', ' ')))
    for ws in (*language.COLOUR_WORDS.values(), *language.SHAPE_WORDS.values()):
        found.update(ws)
    return list(SPECIAL) + sorted(found)


class WordTokenizer:
    """Lower-case word-level tokenizer: [CLS] words... [SEP], unknown words -> [UNK]."""

    def __init__(self, vocab, max_length: int = 20):
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_length = max_length
        self.pad, self.unk, self.cls, self.sep = (self.index[s] for s in SPECIAL)

    def encode(self, text: str) -> list[int]:
        ids = [self.index.get(w, self.unk) for w in language.words(text)]
        return [self.cls] + ids[:self.max_length - 2] + [self.sep]

    def __call__(self, texts) -> dict[str, torch.Tensor]:
        rows = [self.encode(t) for t in texts]
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        return {'input_ids': ids, 'attention_mask': mask}


class NeuroVLAConfig(PretrainedConfig):
    """Sizes of the encoders and head, the vocabulary and the image crop/resize."""
    model_type = 'neurovla_pointer'

    def __init__(self, image_size=(120, 240), patch_size=12, crop=(80, 40, 120, 240),
                 vision_hidden=64, vision_layers=4, vision_heads=4,
                 text_hidden=64, text_layers=2, text_heads=2, head_hidden=96,
                 vocab=None, max_words=20, height_scale=0.05, target_sigma=0.6,
                 decode_mode='softargmax', colours=None, shapes=None, **kwargs):
        self.image_size = [int(v) for v in image_size]
        self.patch_size = int(patch_size)
        self.crop = [int(v) for v in crop]      # top, left, height, width [source px]
        self.vision_hidden, self.vision_layers = vision_hidden, vision_layers
        self.vision_heads = vision_heads
        self.text_hidden, self.text_layers, self.text_heads = text_hidden, text_layers, text_heads
        self.head_hidden = head_hidden
        self.vocab = list(vocab) if vocab is not None else default_vocab()
        self.max_words = max_words
        self.height_scale = height_scale        # [m] centre heights are predicted in this unit
        self.target_sigma = target_sigma        # [patches] width of the soft pointer target
        self.decode_mode = decode_mode          # softargmax (3x3 around the peak) | offset
        # attribute classes: the named colours and 'other' (a colour no instruction names)
        self.colours = list(colours or (*language.COLOUR_WORDS, 'other'))
        self.shapes = list(shapes or language.SHAPE_WORDS)
        super().__init__(**kwargs)
        for name, v in (('image_size', self.image_size), ('crop', self.crop)):
            if any(x <= 0 for x in v[-2:]):
                raise ValueError(f'{name}: sizes must be positive, got {v}')
        if any(s % self.patch_size for s in self.image_size):
            raise ValueError(f'image_size {self.image_size} must be a multiple of patch_size '
                             f'{self.patch_size}')

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    def vit_config(self) -> ViTConfig:
        return ViTConfig(hidden_size=self.vision_hidden, num_hidden_layers=self.vision_layers,
                         num_attention_heads=self.vision_heads,
                         intermediate_size=2 * self.vision_hidden,
                         image_size=tuple(self.image_size), patch_size=self.patch_size,
                         num_channels=1)

    def bert_config(self) -> BertConfig:
        return BertConfig(vocab_size=len(self.vocab), hidden_size=self.text_hidden,
                          num_hidden_layers=self.text_layers,
                          num_attention_heads=self.text_heads,
                          intermediate_size=2 * self.text_hidden,
                          max_position_embeddings=self.max_words + 4, type_vocab_size=1,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


class StreamScore(nn.Module):
    """Score of one visual stream for one sentence: FiLM of the (normalised) patch features by
    the sentence embedding, then an MLP to one logit per patch."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.film = nn.Linear(d, 2 * d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, feat, sentence):
        gamma, beta = self.film(sentence).chunk(2, dim=-1)
        return self.mlp(self.norm(feat) * (1 + gamma[:, None]) + beta[:, None])[..., 0]


class NeuroVLAModel(PreTrainedModel):
    """ViT + BERT + pointer head. ``forward`` returns patch logits, offsets and heights.

    Compositional by construction: the pointer logit of a patch is the sum of a *colour* score
    (per-patch colour embedding, conditioned on the sentence read without its shape words) and
    a *shape* score (the luminance ViT, conditioned on the sentence read without its colour
    words). "Green cylinder" is then found as green plus cylinder, even if no green cylinder was
    ever trained on.
    """
    config_class = NeuroVLAConfig
    base_model_prefix = 'neurovla'
    main_input_name = 'pixel_values'

    def __init__(self, config: NeuroVLAConfig):
        super().__init__(config)
        d = config.vision_hidden
        # two visual streams: the ViT sees luminance only (shape, layout: features that cannot
        # depend on hue), and a per-patch linear colour embedding
        self.vision = ViTModel(config.vit_config(), add_pooling_layer=False)
        self.colour_embed = nn.Conv2d(3, d, kernel_size=config.patch_size,
                                      stride=config.patch_size)
        self.text = BertModel(config.bert_config(), add_pooling_layer=False)
        self.text_proj = nn.Linear(config.text_hidden, d)
        self.colour_score = StreamScore(d, config.head_hidden)
        self.shape_score = StreamScore(d, config.head_hidden)
        # where exactly in the patch, and how high the object's centre is: no text needed
        self.norm_x = nn.LayerNorm(d)
        self.locate_head = nn.Sequential(nn.Linear(d, config.head_hidden), nn.GELU(),
                                         nn.Linear(config.head_hidden, 3))
        # training aid: colour and shape of the object under each patch, each from its stream
        self.attributes = nn.Linear(d, len(config.colours) + len(config.shapes))
        self.tokenizer = WordTokenizer(config.vocab, config.max_words)
        # token ids of colour and shape words (plain lists, not buffers: from_pretrained builds
        # the model on the meta device and would leave non-persistent buffers uninitialised)
        index = {w: i for i, w in enumerate(config.vocab)}
        self.colour_ids = [index[w] for ws in language.COLOUR_WORDS.values() for w in ws
                           if w in index]
        self.shape_ids = [index[w] for ws in language.SHAPE_WORDS.values() for w in ws
                          if w in index]
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        elif hasattr(module, 'cls_token') and hasattr(module, 'position_embeddings'):
            nn.init.normal_(module.cls_token, std=0.02)
            nn.init.normal_(module.position_embeddings, std=0.02)

    def sentence(self, input_ids, attention_mask, hide):
        """Sentence embedding (the [CLS] output) with the words in ``hide`` masked out."""
        mask = attention_mask * (~torch.isin(input_ids, torch.tensor(hide))).long()
        out = self.text(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return self.text_proj(out[:, 0])

    def train(self, mode: bool = True):
        self.__dict__.pop('_sentence_cache', None)   # the weights may change from here on
        if mode:
            self.__dict__.pop('_frozen', None)
        return super().train(mode)

    def _sentences(self, input_ids, attention_mask):
        """(colour-stream, shape-stream) sentence embeddings; in inference (eval, no grad) kept
        per instruction: the cortex asks about the same sentence at every frame. ``train()`` /
        ``eval()`` drop them (training changes the weights)."""
        if self.training or torch.is_grad_enabled():
            return (self.sentence(input_ids, attention_mask, self.shape_ids),
                    self.sentence(input_ids, attention_mask, self.colour_ids))
        cache = self.__dict__.setdefault('_sentence_cache', {})
        key = (tuple(input_ids.shape), input_ids.numpy().tobytes(),
               attention_mask.numpy().tobytes())
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = (self.sentence(input_ids, attention_mask, self.shape_ids),
                          self.sentence(input_ids, attention_mask, self.colour_ids))
        return cache[key]

    def forward(self, pixel_values, input_ids, attention_mask, with_attributes: bool = False):
        """pixel_values B x 3 x H x W (normalised), input_ids / attention_mask B x L.

        Returns logits (B x N patches), offset (B x N x 2, fraction of a patch, 0..1, u then v)
        and height (B x N) [m], patches in row-major grid order; ``with_attributes`` adds the
        per-patch colour + shape logits (B x N x (colours + shapes)).
        """
        return self.point(pixel_values, *self._sentences(input_ids, attention_mask),
                          with_attributes=with_attributes)

    def point(self, pixel_values, s_colour, s_shape, with_attributes: bool = False):
        """``forward`` given the two sentence embeddings (``_sentences``)."""
        lum = (pixel_values * pixel_values.new_tensor(LUMA)[:, None, None]).sum(1, keepdim=True)
        shape_feat = self.vision(pixel_values=lum).last_hidden_state[:, 1:]
        colour_feat = self.colour_embed(pixel_values).flatten(2).transpose(1, 2)
        logits = self.colour_score(colour_feat, s_colour) + self.shape_score(shape_feat, s_shape)
        out = self.locate_head(self.norm_x(shape_feat + colour_feat))
        result = (logits, torch.sigmoid(out[..., :2]),
                  nn.functional.softplus(out[..., 2]) * self.config.height_scale)
        if with_attributes:   # colour from the colour stream, shape from the luminance ViT
            nc = len(self.config.colours)
            result += (torch.cat([self.attributes(colour_feat)[..., :nc],
                                  self.attributes(shape_feat)[..., nc:]], -1),)
        return result

    def freeze_for_inference(self) -> bool:
        """Trace ``point`` for one image into a TorchScript graph with the weights folded in
        (``torch.jit.trace`` + ``freeze``), used by ``infer`` from then on: 30-50 % less CPU per
        plan than the module-by-module eager call (5.3 vs 8.0 ms on this VM, 1 thread), most of
        it Python overhead of the transformers layers. Same outputs to float rounding (tested).
        Returns False, and ``infer`` stays eager, where tracing is unavailable or fails.
        ``train()`` drops the graph (the weights change)."""
        import warnings
        h, w = self.config.image_size
        example = (torch.zeros(1, 3, h, w), torch.zeros(1, self.config.vision_hidden),
                   torch.zeros(1, self.config.vision_hidden))
        self.eval()
        verbosity = hf_logging.get_verbosity()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                # the trace's own notes (shape-dependent branches: the shape is fixed here),
                # the deprecation of torch.jit in favour of torch.compile (which would need a
                # compiler at run time) and transformers' remarks on attributes it visits
                warnings.simplefilter('ignore')
                hf_logging.set_verbosity_error()
                graph = torch.jit.freeze(torch.jit.trace(_Point(self), example,
                                                         check_trace=False).eval())
        except Exception:  # noqa: BLE001 - any failure: the eager path serves
            return False
        finally:
            hf_logging.set_verbosity(verbosity)
        self.__dict__['_frozen'] = graph
        return True

    @property
    def frozen(self) -> bool:
        return '_frozen' in self.__dict__

    def infer(self, pixel_values, input_ids, attention_mask):
        """``forward`` without gradients, through the frozen graph when there is one and the
        input is the one image it was traced for."""
        with torch.inference_mode():
            graph = self.__dict__.get('_frozen')
            if graph is None or self.training or pixel_values.shape[0] != 1:
                return self(pixel_values, input_ids, attention_mask)
            return graph(pixel_values, *self._sentences(input_ids, attention_mask))


class _Point(nn.Module):
    """``NeuroVLAModel.point`` as a module to trace."""

    def __init__(self, model: NeuroVLAModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, s_colour, s_shape):
        return self.model.point(pixel_values, s_colour, s_shape)


def preprocess(images, config: NeuroVLAConfig, cropped: bool = False) -> torch.Tensor:
    """HxWx3 uint8 images -> normalised B x 3 x h x w tensor (crop, then resize if needed).

    ``cropped``: the images are already the crop window (training data is stored so).
    """
    top, left, ch, cw = config.crop
    h, w = config.image_size
    if cropped:
        batch = np.asarray(images)
    else:
        batch = np.stack([np.asarray(im)[top:top + ch, left:left + cw] for im in images])
    if batch.shape[1:] != (ch, cw, 3):
        raise ValueError(f'images must contain the crop window {config.crop} (got crops of '
                         f'{batch.shape[1:]})')
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
    if (ch, cw) != (h, w):
        x = nn.functional.interpolate(x, size=(h, w), mode='bilinear', align_corners=False,
                                      antialias=True)
    return (x - 0.5) / 0.25


def decode(logits, offset, height, config: NeuroVLAConfig, mode: str | None = None):
    """Peak patch of each batch element -> (source pixel u, v), centre height [m], confidence.

    The sub-patch position is either the probability-weighted mean of the patch centres in the
    3x3 neighbourhood of the peak (``softargmax``) or the offset head's output (``offset``).
    """
    rows, cols = config.grid
    prob = torch.softmax(logits, dim=-1)
    conf, idx = prob.max(dim=-1)
    b = torch.arange(len(idx))
    r, c = idx // cols, idx % cols
    if (mode or config.decode_mode) == 'offset':
        off = offset[b, idx]
        mu, mv = c.float() + off[:, 0], r.float() + off[:, 1]
    else:
        grid = prob.reshape(-1, rows, cols)
        mu, mv = torch.zeros(len(idx)), torch.zeros(len(idx))
        for k in range(len(idx)):
            r0, r1 = max(int(r[k]) - 1, 0), min(int(r[k]) + 2, rows)
            c0, c1 = max(int(c[k]) - 1, 0), min(int(c[k]) + 2, cols)
            w = grid[k, r0:r1, c0:c1]
            w = w / w.sum()
            mv[k] = (w.sum(1) * (torch.arange(r0, r1) + 0.5)).sum()
            mu[k] = (w.sum(0) * (torch.arange(c0, c1) + 0.5)).sum()
        conf = grid.new_tensor([float(grid[k, max(int(r[k]) - 1, 0):int(r[k]) + 2,
                                           max(int(c[k]) - 1, 0):int(c[k]) + 2].sum())
                                for k in range(len(idx))])
    p = config.patch_size
    top, left, ch, cw = config.crop
    sx, sy = cw / config.image_size[1], ch / config.image_size[0]
    u = left + mu * p * sx
    v = top + mv * p * sy
    return (torch.stack([u, v], 1).numpy(), height[b, idx].numpy(), conf.numpy())


def targets(uv, config: NeuroVLAConfig, soft: bool = True):
    """Source pixels (B x 2) -> patch index (B), in-patch offset (B x 2) and a soft target
    distribution over patches (B x N, a Gaussian of ``target_sigma`` patches; None unless
    ``soft``) for training."""
    uv = np.asarray(uv, float)
    top, left, ch, cw = config.crop
    p = config.patch_size
    mu = (uv[:, 0] - left) * config.image_size[1] / cw / p
    mv = (uv[:, 1] - top) * config.image_size[0] / ch / p
    rows, cols = config.grid
    c = np.clip(np.floor(mu), 0, cols - 1)
    r = np.clip(np.floor(mv), 0, rows - 1)
    off = np.clip(np.stack([mu - c, mv - r], 1), 0.0, 1.0)
    if not soft:
        return (r * cols + c).astype(np.int64), off.astype(np.float32), None
    gr, gc = np.meshgrid(np.arange(rows) + 0.5, np.arange(cols) + 0.5, indexing='ij')
    d2 = (gc.ravel()[None] - mu[:, None]) ** 2 + (gr.ravel()[None] - mv[:, None]) ** 2
    soft = np.exp(-d2 / (2 * config.target_sigma ** 2))
    soft /= soft.sum(1, keepdims=True)
    return (r * cols + c).astype(np.int64), off.astype(np.float32), soft.astype(np.float32)


@torch.no_grad()
def locate(model: NeuroVLAModel, images, instructions, camera, cropped: bool = False,
           mode: str | None = None):
    """Centres (B x 3, base_link [m]) of the named objects and the pointer's confidence (B).

    The pointed pixel's camera ray meets the horizontal plane at the predicted centre height.
    """
    cfg = model.config
    tok = model.tokenizer(list(instructions))
    logits, offset, height = model.infer(preprocess(images, cfg, cropped), **tok)
    uv, h, conf = decode(logits, offset, height, cfg, mode)
    return camera.backproject(uv, h), conf
