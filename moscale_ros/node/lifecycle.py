"""``moscale_lifecycle_node``: the same node as a managed (lifecycle) node, ``rclpy.lifecycle``.

Transitions (through the standard services ``~/change_state``, ``~/get_state``, e.g. from
``ros2 lifecycle set /moscale_node configure`` or a lifecycle manager):

* ``configure``: read ``robot_description`` (parameter or ``robot_description_topic``), load the
  robot and the model, assign the controllers' joints, start the generation worker; on failure it
  returns FAILURE (back to unconfigured) with the reason logged;
* ``activate``: commands and goals are accepted and trajectories sent;
* ``deactivate``: the running motion is stopped as ``~/stop`` does (the controller is brought to rest
  within ``stop_duration``), then commands and goals are refused ("inactive");
* ``cleanup`` / ``shutdown``: the worker stops, the model and robot are released.

Parameters are read when the process starts; the interfaces exist in every state (a command or goal
before ``activate`` is refused with the reason).
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn

from moscale_ros.node.node import MoScaleNode


class MoScaleLifecycleNode(MoScaleNode, LifecycleNode):
    """:class:`MoScaleNode` driven by lifecycle transitions (module docstring)."""

    managed = True

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        if self.bring_up():
            self.get_logger().info("configured: model and robot loaded (inactive until activated)")
            return TransitionCallbackReturn.SUCCESS
        self.get_logger().error(f"configure failed: {self.startup_error}")
        self.tear_down()
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.output_enabled = True
        self.get_logger().info("activated: accepting commands")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().info(f"deactivated: {self.stop_motion('deactivate')}")
        self.output_enabled = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.tear_down()
        self.get_logger().info("cleaned up: model and robot released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self.output_enabled:
            self.stop_motion("shutdown")
        self.tear_down()
        self.get_logger().info("lifecycle shutdown: model and robot released")
        return TransitionCallbackReturn.SUCCESS
