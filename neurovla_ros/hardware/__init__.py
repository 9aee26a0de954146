"""The real body: serial-bus servo arms (Dynamixel Protocol 2.0, Feetech STS) and their emulator.

ROS-free core: :mod:`.models` (control tables and drive figures from the manuals),
:mod:`.config` (the hardware file: IDs, models, mounting, drive scaling), :mod:`.bus` (the
official SDKs: dynamixel-sdk, feetech-servo-sdk), :mod:`.bridge` (start-up checks, the cycle,
stops, park), :mod:`.protocol` and :mod:`.emulator` (the servo side of the wire, on a pty, with
the MuJoCo arm behind the control tables and fault injection), :mod:`.calibrate`
(``neurovla calibrate``). ROS: :mod:`.node` (the bridge node ``hardware``).
"""
