"""World2VLM-style spatial QA export: action grid (actions), boxes and filters (boxes), transitions
from the simulator or the imagination (sources), task builders (tasks), validator (validate) and
append-only writers (writers). CLI: `python -m v4s_agent.export_qa`."""
