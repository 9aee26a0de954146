"""ament_python package `neurovla`; also pip-installable into a venv (see README)."""
from glob import glob

from setuptools import Extension, find_packages, setup

PACKAGE = 'neurovla'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={'neurovla_ros': ['**/*.npz', '**/*.json', '**/*.safetensors', '**/*.txt']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*')),
        ('share/' + PACKAGE + '/urdf', glob('urdf/*')),
        ('share/' + PACKAGE + '/config', glob('config/*')),
    ],
    # the spinal controller's 1 kHz tick and the cerebellum's tick in C (numpy references of the
    # same code are the fallback)
    ext_modules=[Extension('neurovla_ros.spinal._core', ['neurovla_ros/spinal/_core.c'],
                           extra_compile_args=['-O2', '-ffp-contract=off']),
                 Extension('neurovla_ros.cerebellum._tick', ['neurovla_ros/cerebellum/_tick.c'],
                           extra_compile_args=['-O2', '-ffp-contract=off'])],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='neurovla developers',
    maintainer_email='dev@neurovla.invalid',
    description=('VLA cortex, adaptive cerebellum and spiking spinal layer for a robot arm, '
                 'on ROS 2.'),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'neurovla = neurovla_ros.cli:main',
            'sim_node = neurovla_ros.sim.node:main',
            'cortex_node = neurovla_ros.cortex.node:main',
            'spinal_node = neurovla_ros.spinal.node:main',
            'cerebellum_node = neurovla_ros.cerebellum.node:main',
            'hardware_node = neurovla_ros.hardware.node:main',
            'relay_node = neurovla_ros.relay.node:main',
            'teleop_markers_node = neurovla_ros.markers.node:main',
            'ui_node = neurovla_ros.ui.node:main',
        ],
    },
)
