#!/usr/bin/env bash
# Run the test suite inside .venv with an isolated ROS 2 environment for this run.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 200) + 10 ))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
own_log_dir=""
if [ -z "${ROS_LOG_DIR:-}" ]; then
  own_log_dir=$(mktemp -d /tmp/moscale-roslog.XXXXXX)  # removed after a passing run (kept to read otherwise)
  export ROS_LOG_DIR=$own_log_dir
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/get_text_encoders.sh  # the evaluator's MPNet (its tests read text with it)
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests" >&2
fi
if [ "$rc" -eq 0 ] && [ -n "$own_log_dir" ]; then
  rm -rf "$own_log_dir"
elif [ -n "$own_log_dir" ]; then
  echo "test: ROS 2 logs of this run in $own_log_dir" >&2
fi
exit "$rc"
