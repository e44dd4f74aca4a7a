"""One line of a node's /admin/staleness (JSON on stdin); argv[1] names the node."""
import json
import sys

report = json.load(sys.stdin)
v = report["t_visibility_ms"]
print(
    f"{sys.argv[1]}: writes {v['writes']}, mean {v['mean']:.2f} ms, p50 <= {v['p50']} p90 <= {v['p90']} "
    f"p99 <= {v['p99']} p99.9 <= {v['p999']} ms; not visible by deadline {report['writes_not_visible_by_deadline']}; "
    f"stale reads {report['stale_reads']} of {report['reads_checked']}"
)
