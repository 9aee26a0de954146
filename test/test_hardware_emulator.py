"""The servo-bus emulator on a real pty: byte for byte against the manuals' published packets,
through the official SDKs (dynamixel-sdk, feetech-servo-sdk), its wire timing and its faults.

The published packets: ROBOTIS e-Manual, DYNAMIXEL Protocol 2.0, "Instruction Details"
(examples for XM430-W210, model number 1030, firmware 38); Feetech SCS/STS protocol manual
(ping and read of ID 1, the same framing as Protocol 1.0, whose manuals give the same ping).
"""
import dataclasses
import os
import select
import time
import tty

import dynamixel_sdk as dxl
import numpy as np
import pytest
import scservo_sdk as scs

from neurovla_ros.hardware import config, emulator, models, protocol


def hx(s: str) -> bytes:
    return bytes.fromhex(s)


class Host:
    """The host side of the pty, raw: what a USB adapter hands the bridge."""

    def __init__(self, link):
        self.fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def xfer(self, data: bytes, n: int, timeout: float = 1.0) -> bytes:
        """Write ``data``; return what arrives until ``n`` bytes or ``timeout`` [s]."""
        os.write(self.fd, data)
        return self.recv(n, timeout)

    def recv(self, n: int, timeout: float) -> bytes:
        out = b''
        end = time.monotonic() + timeout
        while len(out) < n:
            rem = end - time.monotonic()
            if rem <= 0 or not select.select([self.fd], [], [], rem)[0]:
                break
            out += os.read(self.fd, 4096)
        return out

    def close(self):
        os.close(self.fd)


@pytest.fixture
def bus_of(tmp_path):
    """bus_of(protocol, **ServoBus kwargs) -> a started ServoBus on its own World (physics
    attached but not running: a test steps it, so present values stay as it sets them)."""
    made = []

    def make(proto, baud=None, **kw):
        cfg = config.load(None, proto)
        if baud:
            cfg = dataclasses.replace(cfg, baud=baud)
        bus = emulator.ServoBus(cfg, emulator.make_world(), link=str(tmp_path / f'{proto}.pty'),
                                **kw)
        bus.attach()
        bus.start()
        made.append(bus)
        return bus
    yield make
    for b in made:
        b.close()


def table(bus, servo_id):
    return next(s.table for s in bus.servos if s.servo_id == servo_id)


# ---------------------------------------------------------------- framing (no pty)
def test_dynamixel_framing_is_the_manuals():
    assert protocol.dxl_instruction(1, protocol.PING) == hx('ff ff fd 00 01 03 00 01 19 4e')
    assert protocol.dxl_instruction(0xFE, protocol.PING) == hx('ff ff fd 00 fe 03 00 01 31 42')
    assert (protocol.dxl_instruction(1, protocol.READ, hx('84 00 04 00'))
            == hx('ff ff fd 00 01 07 00 02 84 00 04 00 1d 15'))
    assert (protocol.dxl_instruction(1, protocol.WRITE, hx('74 00 00 02 00 00'))
            == hx('ff ff fd 00 01 09 00 03 74 00 00 02 00 00 ca 89'))
    assert protocol.dxl_instruction(1, protocol.REBOOT) == hx('ff ff fd 00 01 03 00 08 2f 4e')
    assert protocol.dxl_status(1, 0, hx('06 04 26')) == hx('ff ff fd 00 01 07 00 55 00 06 04 '
                                                             '26 65 5d')
    assert protocol.dxl_status(2, 0, hx('06 04 26')) == hx('ff ff fd 00 02 07 00 55 00 06 04 '
                                                             '26 6f 6d')
    assert protocol.dxl_status(1, 0) == hx('ff ff fd 00 01 04 00 55 00 a1 0c')


def test_dynamixel_byte_stuffing_and_parser():
    # the manual: FF FF FD inside INST..PARAM gets one more FD; the receiver drops it
    body = bytes([protocol.WRITE]) + hx('74 00 ff ff fd 00')
    assert protocol.stuff(body) == bytes([protocol.WRITE]) + hx('74 00 ff ff fd fd 00')
    assert protocol.unstuff(protocol.stuff(body)) == body
    pkt = protocol.dxl_instruction(3, protocol.WRITE, hx('74 00 ff ff fd 00'))
    assert pkt[5] | pkt[6] << 8 == 6 + 3 + 1          # 6 params + INST + CRC + the stuffed FD
    p = protocol.DynamixelParser()
    got = p.feed(b'\x00\xff' + pkt[:5]) + p.feed(pkt[5:])   # garbage first, split packet
    assert [(i.servo_id, i.inst, i.params, i.crc_ok) for i in got] == [
        (3, protocol.WRITE, hx('74 00 ff ff fd 00'), True)]
    bad = pkt[:-1] + bytes([pkt[-1] ^ 1])
    assert not p.feed(bad)[0].crc_ok


def test_feetech_framing_is_the_manuals():
    assert protocol.sts_instruction(1, protocol.PING) == hx('ff ff 01 02 01 fb')
    assert protocol.sts_status(1, 0) == hx('ff ff 01 02 00 fc')
    assert protocol.sts_instruction(1, protocol.READ, hx('38 02')) == hx('ff ff 01 04 02 38 02 be')
    assert (protocol.sts_instruction(1, protocol.WRITE, hx('2a 00 08 00 00 e8 03'))
            == hx('ff ff 01 09 03 2a 00 08 00 00 e8 03 d5'))
    got = protocol.FeetechParser().feed(hx('ff ff ff 01 04 02 38 02 be'))   # a run of FF
    assert [(i.servo_id, i.inst, i.params, i.crc_ok) for i in got] == [
        (1, protocol.READ, hx('38 02'), True)]


def test_sign_magnitude_and_twos_complement_registers():
    sm15 = models.STS_TABLE['present_position']
    assert models.encode(-5, sm15) == 0x8005 and models.decode(0x8005, sm15) == -5
    sm11 = models.STS_TABLE['homing_offset']
    assert models.encode(-300, sm11) == 0x800 | 300 and models.decode(0x800 | 300, sm11) == -300
    s32 = models.DXL_X_TABLE['present_velocity']
    assert models.encode(-1, s32) == 0xFFFFFFFF and models.decode(0xFFFFFFFF, s32) == -1


# ---------------------------------------------------------------- the emulator, byte for byte
def test_dynamixel_emulator_answers_the_manuals_examples(bus_of):
    bus = bus_of('dynamixel')
    bus.inject('model', ids=[1, 2], value=1030)      # the manual's XM430-W210, firmware 38
    table(bus, 1)['firmware_version'] = table(bus, 2)['firmware_version'] = 38
    host = Host(bus.link)
    try:
        assert host.xfer(hx('ff ff fd 00 01 03 00 01 19 4e'), 14) == hx(
            'ff ff fd 00 01 07 00 55 00 06 04 26 65 5d')
        # broadcast ping: every servo answers in ID order (the first two are the manual's)
        got = host.xfer(hx('ff ff fd 00 fe 03 00 01 31 42'), 14 * 7)
        assert got[:28] == hx('ff ff fd 00 01 07 00 55 00 06 04 26 65 5d'
                              'ff ff fd 00 02 07 00 55 00 06 04 26 6f 6d')
        assert len(got) == 14 * 7
        table(bus, 1)['present_position'] = 166
        table(bus, 2)['present_position'] = 2079
        assert host.xfer(hx('ff ff fd 00 01 07 00 02 84 00 04 00 1d 15'), 15) == hx(
            'ff ff fd 00 01 08 00 55 00 a6 00 00 00 8c c0')
        assert host.xfer(hx('ff ff fd 00 fe 09 00 82 84 00 04 00 01 02 ce fa'), 30) == hx(
            'ff ff fd 00 01 08 00 55 00 a6 00 00 00 8c c0'
            'ff ff fd 00 02 08 00 55 00 1f 08 00 00 ba be')
        assert host.xfer(hx('ff ff fd 00 01 09 00 03 74 00 00 02 00 00 ca 89'), 11) == hx(
            'ff ff fd 00 01 04 00 55 00 a1 0c')
        assert table(bus, 1)['goal_position'] == 512
        assert host.xfer(hx('ff ff fd 00 fe 11 00 83 74 00 04 00 01 96 00 00 00 02 aa 00 00 00 '
                            '82 87'), 1, timeout=0.1) == b''        # sync write: no reply
        assert (table(bus, 1)['goal_position'], table(bus, 2)['goal_position']) == (150, 170)
        assert host.xfer(hx('ff ff fd 00 01 03 00 08 2f 4e'), 11) == hx(
            'ff ff fd 00 01 04 00 55 00 a1 0c')
        # a broken CRC: the servo answers with CRC Error (0x03)
        reply = host.xfer(hx('ff ff fd 00 03 03 00 01 19 4e'), 11)
        assert reply[4] == 3 and reply[8] == models.DXL_ERR_CRC
        assert bus.stats.crc_errors == 1
        # EEPROM with torque on: Access Error; Goal Current beyond Current Limit: Data Limit
        table(bus, 3)['torque_enable'] = 1
        reply = host.xfer(protocol.dxl_instruction(3, protocol.WRITE, hx('0b 00 00')), 11)
        assert reply[8] == models.DXL_ERR_ACCESS and table(bus, 3)['operating_mode'] == 3
        reply = host.xfer(protocol.dxl_instruction(3, protocol.WRITE, hx('66 00 ff 7f')), 11)
        assert reply[8] == models.DXL_ERR_DATA_LIMIT
    finally:
        host.close()


def test_dynamixel_operating_mode_write_resets_goal_current_as_the_manual_says(bus_of):
    bus = bus_of('dynamixel')
    t = table(bus, 1)
    t['goal_current'] = 100
    host = Host(bus.link)
    try:
        assert host.xfer(protocol.dxl_instruction(1, protocol.WRITE, hx('0b 00 00')), 11)[8] == 0
    finally:
        host.close()
    assert t['operating_mode'] == models.DXL_OP_CURRENT
    assert t['goal_current'] == t['current_limit'] == 1193


def test_feetech_emulator_answers_the_manuals_examples(bus_of):
    bus = bus_of('feetech')
    host = Host(bus.link)
    try:
        assert host.xfer(hx('ff ff 01 02 01 fb'), 6) == hx('ff ff 01 02 00 fc')
        table(bus, 1)['present_position'] = 1304
        assert host.xfer(hx('ff ff 01 04 02 38 02 be'), 8) == hx('ff ff 01 04 00 18 05 dd')
        assert host.xfer(hx('ff ff 01 09 03 2a 00 08 00 00 e8 03 d5'), 6) == hx(
            'ff ff 01 02 00 fc')
        assert table(bus, 1)['goal_position'] == 2048
        assert table(bus, 1)['goal_velocity'] == 1000
        # sign-magnitude on the wire: Present Speed -20 steps/s is 0x8014
        table(bus, 2)['present_velocity'] = -20
        assert host.xfer(protocol.sts_instruction(2, protocol.READ, hx('3a 02')), 8) == (
            protocol.sts_status(2, 0, hx('14 80')))
        # a bad checksum: the servo ignores the packet
        assert host.xfer(hx('ff ff 01 02 01 fa'), 1, timeout=0.1) == b''
    finally:
        host.close()


# ---------------------------------------------------------------- through the official SDKs
def test_official_dynamixel_sdk_reads_and_writes_the_emulated_servos(bus_of):
    bus = bus_of('dynamixel')
    for i, s in enumerate(bus.servos):
        s.table['present_position'] = 1000 + 100 * i
        s.table['present_current'] = -(5 + i)
    port = dxl.PortHandler(bus.link)
    assert port.openPort() and port.setBaudRate(4_000_000)
    ph = dxl.PacketHandler(2.0)
    try:
        model, result, err = ph.ping(port, 5)
        assert (model, result, err) == (1020, dxl.COMM_SUCCESS, 0)
        assert ph.ping(port, 42)[1] == dxl.COMM_RX_TIMEOUT          # nobody at ID 42
        gsr = dxl.GroupSyncRead(port, ph, 126, 10)
        for sid in range(1, 8):
            assert gsr.addParam(sid)
        assert gsr.txRxPacket() == dxl.COMM_SUCCESS
        pos = [gsr.getData(sid, 132, 4) for sid in range(1, 8)]
        cur = [models.decode(gsr.getData(sid, 126, 2), models.DXL_X_TABLE['present_current'])
               for sid in range(1, 8)]
        assert pos == [1000 + 100 * i for i in range(7)]
        assert cur == [-(5 + i) for i in range(7)]
        assert gsr.fastSyncRead() == dxl.COMM_SUCCESS                # one status packet
        assert [gsr.getData(sid, 132, 4) for sid in range(1, 8)] == pos
        gsw = dxl.GroupSyncWrite(port, ph, 116, 4)
        for sid in range(1, 8):
            assert gsw.addParam(sid, list((2000 + sid).to_bytes(4, 'little')))
        assert gsw.txPacket() == dxl.COMM_SUCCESS
        time.sleep(0.05)
        assert [s.table['goal_position'] for s in bus.servos] == [2000 + i for i in range(1, 8)]
        assert ph.write1ByteTxRx(port, 1, 64, 1) == (dxl.COMM_SUCCESS, 0)   # torque on
        assert table(bus, 1)['torque_enable'] == 1
        assert ph.read1ByteTxRx(port, 1, 64) == (1, dxl.COMM_SUCCESS, 0)
    finally:
        port.closePort()


def test_official_feetech_sdk_reads_and_writes_the_emulated_servos(bus_of):
    bus = bus_of('feetech')
    for i, s in enumerate(bus.servos):
        s.table['present_position'] = 1500 + 10 * i
        s.table['present_velocity'] = -(i + 1)
    port = scs.PortHandler(bus.link)
    assert port.openPort() and port.setBaudRate(1_000_000)
    ph = scs.PacketHandler(0)
    try:
        assert ph.ping(port, 3) == (777, scs.COMM_SUCCESS, 0)
        gsr = scs.GroupSyncRead(port, ph, 56, 4)
        for sid in range(1, 8):
            assert gsr.addParam(sid)
        assert gsr.txRxPacket() == scs.COMM_SUCCESS
        got = [(gsr.getData(sid, 56, 2), models.decode(gsr.getData(sid, 58, 2),
                                                       models.STS_TABLE['present_velocity']))
               for sid in range(1, 8)]
        assert got == [(1500 + 10 * i, -(i + 1)) for i in range(7)]
        gsw = scs.GroupSyncWrite(port, ph, 42, 2)
        for sid in range(1, 8):
            assert gsw.addParam(sid, list((3000 + sid).to_bytes(2, 'little')))
        assert gsw.txPacket() == scs.COMM_SUCCESS
        time.sleep(0.05)
        assert [s.table['goal_position'] for s in bus.servos] == [3000 + i for i in range(1, 8)]
    finally:
        port.closePort()


# ---------------------------------------------------------------- wire timing
def test_replies_take_the_byte_time_of_the_baud_rate_and_the_return_delay(bus_of):
    # 57600 baud: a ping (10 bytes) and its status (14 bytes) need 24 x 10 / 57600 = 4.17 ms
    bus = bus_of('dynamixel', baud=57600, return_delay_us=500)
    host = Host(bus.link)
    try:
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            assert len(host.xfer(protocol.dxl_instruction(1, protocol.PING), 14)) == 14
            times.append(time.monotonic() - t0)
    finally:
        host.close()
    wire = 24 * 10 / 57600 + 500e-6
    assert min(times) >= wire - 0.2e-3, times      # the last byte cannot come earlier
    assert np.median(times) < wire + 10e-3, times


def test_a_usb_latency_timer_holds_short_replies_until_it_runs_out(bus_of):
    bus = bus_of('dynamixel', usb_latency_s=0.016)
    host = Host(bus.link)
    try:
        times = []
        for _ in range(4):
            t0 = time.monotonic()
            assert len(host.xfer(protocol.dxl_instruction(2, protocol.PING), 14)) == 14
            times.append(time.monotonic() - t0)
            time.sleep(0.003)
    finally:
        host.close()
    # the first reply waits for the adapter's free-running timer to run out (any phase: 0-16
    # ms); each later one for the period restarted at the transfer before it (16 ms - 3 ms)
    assert times[0] < 17e-3, times
    assert all(8e-3 < t < 17e-3 for t in times[1:]), times      # 16 ms periods, not 30 us


def test_the_wire_model_of_one_bus_cycle():
    dx, ft = config.load(None, 'dynamixel'), config.load(None, 'feetech')
    # Feetech: sync read 15 bytes of 7 servos (15 + 7 x 21 bytes) + sync write of 6 goals
    # (26 bytes) at 1 Mbaud = 188 bytes x 10 us
    assert emulator.cycle_bytes(ft) == (15 + 7 * 21, 26)
    assert emulator.cycle_wire_s(ft) == pytest.approx(188 * 10e-6)
    # Dynamixel: fast sync read 10 bytes of 7 (14 + 8 + 7 x 14 + ...), sync write of 6 currents
    read, write = emulator.cycle_bytes(dx)
    assert read == 14 + 7 + 8 + 7 * 14 and write == 14 + 6 * 3
    assert emulator.cycle_wire_s(dx) == pytest.approx((read + write) * 2.5e-6)
    # a 16 ms latency timer: a read's reply waits for the timer (most of it in one period)
    assert 0.016 <= emulator.cycle_wire_s(dx, usb_latency_s=0.016) <= 0.033


# ---------------------------------------------------------------- faults
def _ping(bus):
    port = dxl.PortHandler(bus.link)
    assert port.openPort() and port.setBaudRate(4_000_000)
    try:
        return dxl.PacketHandler(2.0).ping(port, 2)
    finally:
        port.closePort()


@pytest.mark.parametrize('kind, result', [
    ('drop', dxl.COMM_RX_TIMEOUT), ('silent', dxl.COMM_RX_TIMEOUT),
    ('bad_crc', dxl.COMM_RX_CORRUPT), ('duplicate_id', dxl.COMM_RX_CORRUPT)])
def test_reply_faults_reach_the_official_sdk_as_it_would_see_them(bus_of, kind, result):
    bus = bus_of('dynamixel')
    bus.inject(kind, ids=[2])
    assert _ping(bus)[1] == result
    assert bus.stats.faults_applied[kind] >= 1
    bus.clear(kind)
    assert _ping(bus)[:2] == (1020, dxl.COMM_SUCCESS)


def test_truncated_wrong_id_and_slow_replies_are_no_valid_answer(bus_of):
    bus = bus_of('dynamixel')
    for kind, kw in (('truncate', {}), ('wrong_id', {}), ('slow', {'value': 0.2})):
        bus.inject(kind, ids=[2], **kw)
        model, result, _ = _ping(bus)
        assert result != dxl.COMM_SUCCESS, kind
        bus.clear()
        time.sleep(0.3)                      # a late reply would corrupt the next transaction
        host = Host(bus.link)
        host.recv(1 << 16, 0.05)
        host.close()
    bus.inject('model', ids=[2], value=1030)
    assert _ping(bus)[:2] == (1030, dxl.COMM_SUCCESS)


def test_a_hardware_error_sets_the_alert_bit_and_shuts_the_servo_down(bus_of):
    bus = bus_of('dynamixel')
    t = table(bus, 2)
    t['torque_enable'] = 1
    bus.inject('hw_error', ids=[2], value=models.HW_OVERLOAD)
    bus.world.step(1)
    model, result, err = _ping(bus)
    assert result == dxl.COMM_SUCCESS and err & models.DXL_ALERT
    assert t['hardware_error_status'] == models.HW_OVERLOAD
    assert t['torque_enable'] == 0                        # Shutdown has the overload bit
    bus.clear('hw_error')
    bus.world.step(1)
    assert t['hardware_error_status'] == models.HW_OVERLOAD   # latched until REBOOT
    port = dxl.PortHandler(bus.link)
    assert port.openPort() and port.setBaudRate(4_000_000)
    try:
        assert dxl.PacketHandler(2.0).reboot(port, 2)[0] == dxl.COMM_SUCCESS
    finally:
        port.closePort()
    assert t['hardware_error_status'] == 0


def test_feetech_status_bits_reach_the_official_sdk(bus_of):
    bus = bus_of('feetech')
    bus.inject('hw_error', ids=[4], value=0x20)          # overload
    bus.world.step(1)
    port = scs.PortHandler(bus.link)
    assert port.openPort() and port.setBaudRate(1_000_000)
    try:
        assert scs.PacketHandler(0).ping(port, 4) == (777, scs.COMM_SUCCESS, 0x20)
    finally:
        port.closePort()


def test_a_vanishing_port_reads_eio_and_comes_back(bus_of):
    bus = bus_of('dynamixel')
    host = Host(bus.link)
    assert len(host.xfer(protocol.dxl_instruction(1, protocol.PING), 14)) == 14
    bus.inject('vanish', duration=0.3)
    assert not os.path.exists(bus.link)
    with pytest.raises(OSError):
        for _ in range(3):                   # EIO: the other end of the pty is gone
            os.write(host.fd, protocol.dxl_instruction(1, protocol.PING))
            os.read(host.fd, 64)
    host.close()
    deadline = time.monotonic() + 3
    while not os.path.exists(bus.link) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _ping(bus)[1] == dxl.COMM_SUCCESS


def test_fault_specs_parse_and_refuse_unknown_kinds_and_keys():
    assert emulator.parse_fault('drop:ids=3+4,rate=0.5,duration=2') == {
        'kind': 'drop', 'ids': (3, 4), 'rate': 0.5, 'duration': 2.0}
    assert emulator.parse_fault('hw_error:ids=2,value=32') == {
        'kind': 'hw_error', 'ids': (2,), 'value': 32.0}
    with pytest.raises(ValueError, match='not one of'):
        emulator.parse_fault('melt:ids=1')
    with pytest.raises(ValueError, match='unknown key'):
        emulator.parse_fault('drop:when=now')


# ---------------------------------------------------------------- the servos behind the tables
def test_current_mode_torque_is_goal_current_times_the_torque_constant(bus_of):
    bus = bus_of('dynamixel')
    s = bus.servos[1]                                    # shoulder lift
    t = s.table
    t['operating_mode'] = models.DXL_OP_CURRENT
    t['goal_current'] = 300
    t['torque_enable'] = 1
    tau = s.torque(0.0, 0.0, time.monotonic())
    assert tau == pytest.approx(300 * 2.69e-3 * s.drive.torque_constant * s.drive.direction)
    t['goal_current'] = 1193                            # Current Limit = stall: effort limit
    assert abs(s.torque(0.0, 0.0, time.monotonic())) <= s.effort_limit * 1.0001
    # at speed the DC motor's envelope cuts the torque
    w_nl = s.model.no_load_speed
    assert abs(s.torque(0.0, 0.5 * w_nl, time.monotonic())) == pytest.approx(
        0.5 * s.effort_limit, rel=1e-3)


def test_packaged_hardware_files_follow_the_drive_scaling_rule():
    from neurovla_ros import robot
    rm = robot.load()
    for proto in config.PROTOCOLS:
        cfg = config.load(None, proto)
        assert cfg.protocol == proto and len(cfg.drives) == 7 and cfg.gripper.gripper
        for d in cfg.drives:
            want = config.scaled_torque_constant(d.model, rm.joints[d.joint].effort)
            assert d.torque_constant == pytest.approx(want, abs=1e-3), d.joint
            assert d.effort_limit == pytest.approx(rm.joints[d.joint].effort, rel=1e-4)


@pytest.mark.parametrize('edit, message', [
    (lambda r: r['joints'][2].update(id=1), r'servo ID\(s\) \[1\] used by more than one'),
    (lambda r: r['joints'][0].update(model='AX-12A'), r'joints\[shoulder_pan_joint\]\.model'),
    (lambda r: r['joints'][1].update(direction=2), r'direction: 2 must be 1 or -1'),
    (lambda r: r['joints'][3].update(min_ticks=3000), r'wrist_1_joint.*min_ticks <= zero'),
    (lambda r: r.update(baud=1234), r'baud: 1234'),
    (lambda r: r.update(park=[0, 0, 9, 0, 0, 0]), 'outside the URDF joint limits'),
    (lambda r: r['joints'].pop(4), r"no entry for \['wrist_2_joint'\]"),
    (lambda r: r.update(interface='torque'), "interface: 'torque'"),
])
def test_a_bad_hardware_file_names_the_field(tmp_path, edit, message):
    import yaml
    with open(config.packaged('dynamixel')) as f:
        raw = yaml.safe_load(f)
    edit(raw)
    path = tmp_path / 'hw.yaml'
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(config.ConfigError, match=message):
        config.load(str(path), 'dynamixel')


def test_feetech_servos_have_no_current_interface(tmp_path):
    import yaml
    with open(config.packaged('feetech')) as f:
        raw = yaml.safe_load(f)
    raw['interface'] = 'current'
    path = tmp_path / 'hw.yaml'
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(config.ConfigError, match='no current control mode'):
        config.load(str(path), 'feetech')
