"""Bring up neurovla on a ROS 2 install: ``ros2 launch neurovla bringup.launch.py [arg:=value]``.

A thin mapping: the launch arguments and everything started come from
``neurovla_ros/graph.py`` (shared with the pip-mode runner ``neurovla bringup``).
``ros2 launch neurovla bringup`` (the file ``bringup`` next to this one) loads this file.
"""
import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from neurovla_ros import graph


def _string(value):
    return ParameterValue(value, value_type=str)


def _installed(package):
    try:
        get_package_share_directory(package)
    except PackageNotFoundError:
        return False
    return True


def _start(context):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.LAUNCH_ARGS}
    plan = graph.launch_plan(values, str_value=_string, installed=_installed)
    if values['show_plan'] == 'true':
        return [LogInfo(msg='neurovla bringup would start:\n' + graph.format_plan(plan))]
    actions = []
    for action in plan:
        if action.kind == 'node':
            actions.append(Node(**action.kwargs))
        elif action.kind == 'include':
            path = os.path.join(get_package_share_directory(action.package), action.file)
            actions.append(IncludeLaunchDescription(
                PythonLaunchDescriptionSource(path), launch_arguments=action.kwargs.items()))
        else:
            raise ValueError(f'unknown action kind {action.kind!r}')
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      choices=list(a.choices) or None)
                for a in graph.LAUNCH_ARGS]
    return LaunchDescription([*declared, OpaqueFunction(function=_start)])
