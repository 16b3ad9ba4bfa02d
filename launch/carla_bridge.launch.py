"""carla-ros-bridge with an ego vehicle and an rgb_front camera, plus the metasteer steering node.

Needs a CARLA server and the ros-bridge workspace (carla_ros_bridge, carla_spawn_objects, carla_msgs)
sourced. The bridge pins CARLA 0.9.13 in its CARLA_VERSION file; with the 0.9.16 client edit that file.

The bridge waits for the vehicle control command before the next tick
(``synchronous_mode_wait_for_vehicle_control_command``, default false in the bridge; it waits up to 1 s,
then ticks anyway), so each frame's command acts on the next tick: the lockstep the models were judged in.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("metasteer")
    bridge = get_package_share_directory("carla_ros_bridge")
    spawn = get_package_share_directory("carla_spawn_objects")
    args = [DeclareLaunchArgument(name, default_value=value) for name, value in (
        ("host", "localhost"), ("port", "2000"), ("town", "Town01"), ("role_name", "ego_vehicle"),
        ("model_path", os.path.join(share, "models", "learned.onnx")))]
    return LaunchDescription(args + [
        IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(bridge, "carla_ros_bridge.launch.py")), launch_arguments={
            "host": LaunchConfiguration("host"), "port": LaunchConfiguration("port"), "town": LaunchConfiguration("town"),
            "synchronous_mode": "True", "synchronous_mode_wait_for_vehicle_control_command": "True",
            "fixed_delta_seconds": "0.05"}.items()),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(spawn, "carla_example_ego_vehicle.launch.py")), launch_arguments={
            "role_name": LaunchConfiguration("role_name"), "objects_definition_file": os.path.join(share, "config", "ego_vehicle.json")}.items()),
        Node(package="metasteer", executable="steering_node", name="metasteer_steering", output="screen",
             parameters=[os.path.join(share, "config", "steering_node.yaml"),
                         {"model_path": LaunchConfiguration("model_path"), "role_name": LaunchConfiguration("role_name"),
                          "interface": "carla_msgs"}]),  # use_sim_time: true comes from the params file
    ])
