"""The labels a run's metrics carry, with their number bounded.

Every label set is a separate series in Prometheus, kept in memory here and in every scrape,
so callers must not be able to make new ones at will. A deployment name that resolved to no
deployment (a typo, a probe) is `(unknown)`, never the name typed; a variant counts only once
the deployment served a version of it. What remains (existing deployments, their variants,
the models and providers they call) is bounded by the catalog, and capped all the same: past
`limit` distinct sets, new ones fold into `(other)`, so a workspace with very many deployments,
or models a caller may override, cannot grow the scrape without bound.
"""

from __future__ import annotations

from promptdeck.domain.runs import RunRecord

UNKNOWN = "(unknown)"  # a deployment name that resolved to no deployment
OTHER = "(other)"  # a label set past the cap
LABELS = ("deployment", "variant", "provider", "model", "dialect")
PLAYGROUND = "playground"  # its runs serve a draft, not a deployment of the catalog

RunLabels = tuple[str, str, str, str, str]


def run_labels(record: RunRecord) -> RunLabels:
    """The run's labels, before the cap: caller-typed names that named nothing become UNKNOWN."""
    if record.deployment_id is None:
        deployment = PLAYGROUND if record.dialect == PLAYGROUND else UNKNOWN
        variant = ""
    else:
        deployment = record.deployment
        variant = (record.variant or "") if record.version_id is not None else ""
    return (deployment, variant, record.provider or "", record.model or "", record.dialect)


class BoundedLabels:
    """Label sets as first seen, up to `limit`; later new ones become OTHER but for their last
    `kept` labels (a run's dialect: a fixed small set). Sets are remembered only while under the
    cap, so memory stays bounded whatever callers send."""

    def __init__(self, limit: int, kept: int = 1) -> None:
        self.limit = limit
        self.kept = kept
        self._seen: set[tuple[str, ...]] = set()
        self.folded = 0  # label sets that became OTHER, for the docs' advice on raising the cap

    def bounded(self, labels: tuple[str, ...]) -> tuple[str, ...]:
        if labels in self._seen:
            return labels
        if len(self._seen) < self.limit:
            self._seen.add(labels)
            return labels
        self.folded += 1
        folded = len(labels) - self.kept
        return (*(OTHER for _ in labels[:folded]), *labels[folded:])
