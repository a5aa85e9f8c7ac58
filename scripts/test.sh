#!/usr/bin/env bash
# Run the test suite inside .venv with an isolated ROS 2 environment for this run.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 200) + 10 ))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR=${ROS_LOG_DIR:-$(mktemp -d /tmp/moscale-roslog.XXXXXX)}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/get_text_encoders.sh  # the evaluator's MPNet (its tests read text with it)
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests" >&2
fi
exit "$rc"
