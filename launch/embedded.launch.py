"""Embedded bridge + steering node (full ROS 2 installs; here: `metasteer drive --world embedded`)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("metasteer")
    model = LaunchConfiguration("model_path")
    return LaunchDescription([
        DeclareLaunchArgument("model_path", default_value=os.path.join(share, "models", "learned.onnx")),
        SetEnvironmentVariable("ROS_LOCALHOST_ONLY", "1"),
        Node(package="metasteer", executable="embedded_bridge", name="metasteer_embedded_bridge", output="screen",
             parameters=[os.path.join(share, "config", "embedded_bridge.yaml")]),
        Node(package="metasteer", executable="steering_node", name="metasteer_steering", output="screen",
             parameters=[os.path.join(share, "config", "steering_node.yaml"), {"model_path": model}]),  # use_sim_time from the params files
    ])
