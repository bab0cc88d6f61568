"""The orchestrator: discovery → graph → scheduler → workers.

``discover`` reads a tasks directory into a validated ``Plan``;
``build_graph`` turns it into the unit graph recorded with a run;
``set_status`` writes a task's new status back into its file.

Errors (each a ``choo.errors.ChooError``)::

    PlanInvalid               a tasks directory cannot be run; ``problems`` lists every reason
    FrontmatterError          (ValueError) a task file's frontmatter cannot be used
    ├── UnclosedFrontmatter
    ├── InvalidYaml
    └── NotAMapping
"""

from choo.orchestrator.discovery import (
    PLAN_FILE,
    Plan,
    PlanInvalid,
    Problem,
    Task,
    Unit,
    discover,
)
from choo.orchestrator.frontmatter import (
    STATUSES,
    FrontmatterError,
    InvalidYaml,
    NotAMapping,
    UnclosedFrontmatter,
    set_status,
    split,
)
from choo.orchestrator.graph import (
    Graph,
    GraphDict,
    GraphEdge,
    GraphNode,
    build_graph,
    dependents,
    ready_units,
)

__all__ = [
    "PLAN_FILE",
    "STATUSES",
    "FrontmatterError",
    "Graph",
    "GraphDict",
    "GraphEdge",
    "GraphNode",
    "InvalidYaml",
    "NotAMapping",
    "Plan",
    "PlanInvalid",
    "Problem",
    "Task",
    "UnclosedFrontmatter",
    "Unit",
    "build_graph",
    "dependents",
    "discover",
    "ready_units",
    "set_status",
    "split",
]
