"""Start ``moscale_node`` with the package's parameter file.

    ros2 launch moscale_ros moscale.launch.py
    ros2 launch moscale_ros moscale.launch.py controller_topic:=/arm_controller/joint_trajectory
    ros2 launch moscale_ros moscale.launch.py params_file:=/path/to/my_moscale.yaml use_sim_time:=true
    ros2 launch moscale_ros moscale.launch.py sim:=true       # + moscale_sim_node (MuJoCo), on its /clock

``controller_topic`` remaps the node's trajectory output onto your controller's
``~/joint_trajectory`` topic (see docs/ROS.md for Gazebo and Isaac Sim). Every other setting lives
in the parameter file (default: the installed ``config/moscale.yaml``). ``sim:=true`` also starts
``moscale_sim_node`` (the robot simulated in MuJoCo behind the controller rules, robot ``sim_robot``)
and puts moscale_node on the simulation's ``/clock``.
"""

# ruff: noqa: I001  (the "launch" imported here is the ROS package, not this folder)
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

DEFAULT_CONTROLLER_TOPIC = "/joint_trajectory_controller/joint_trajectory"


def generate_launch_description() -> LaunchDescription:
    params_file = LaunchConfiguration("params_file")
    controller_topic = LaunchConfiguration("controller_topic")
    use_sim_time = LaunchConfiguration("use_sim_time")
    sim = LaunchConfiguration("sim")
    sim_robot = LaunchConfiguration("sim_robot")
    on_sim_clock = PythonExpression(["'", use_sim_time, "' == 'true' or '", sim, "' == 'true'"])
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([FindPackageShare("moscale_ros"), "config", "moscale.yaml"]),
                description="parameter file of moscale_node",
            ),
            DeclareLaunchArgument(
                "controller_topic",
                default_value=DEFAULT_CONTROLLER_TOPIC,
                description="JointTrajectory topic of your trajectory controller",
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="follow /clock (Gazebo, Isaac Sim)"
            ),
            DeclareLaunchArgument("sim", default_value="false", description="also run moscale_sim_node (MuJoCo)"),
            DeclareLaunchArgument("sim_robot", default_value="g1", description="robot of moscale_sim_node"),
            Node(
                package="moscale_ros",
                executable="moscale_node",
                name="moscale_node",
                output="screen",
                emulate_tty=True,
                parameters=[params_file, {"use_sim_time": ParameterValue(on_sim_clock, value_type=bool)}],
                remappings=[(DEFAULT_CONTROLLER_TOPIC, controller_topic)],
            ),
            Node(
                package="moscale_ros",
                executable="moscale_sim_node",
                name="moscale_sim_node",
                output="screen",
                emulate_tty=True,
                condition=IfCondition(sim),
                parameters=[{"robot": sim_robot, "controller_topic": controller_topic}],
            ),
        ]
    )
