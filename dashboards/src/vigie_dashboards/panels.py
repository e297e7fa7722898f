"""Small builders shared by the dashboards: one Prometheus data source variable, camera filtering,
and the two panel shapes Vigie uses (time series and stat)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every Vigie dashboard filters by camera; "$camera" is a regular expression over camera ids.
CAMERA = 'camera=~"$camera"'


def query(expr: str, legend: str = "", ref_id: str = "A") -> prometheus.Dataquery:
    dataquery = prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref_id)
    return dataquery.datasource(DATASOURCE)


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(label: str, title: str, metric: str) -> dashboard.QueryVariable:
    """The values ``metric`` has for ``label``, several or all selectable (all: the regex ``.*``)."""
    return (
        dashboard.QueryVariable(label)
        .label(title)
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, {label})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def camera_variable(metric: str) -> dashboard.QueryVariable:
    return label_variable("camera", "Camera", metric)


def graph(
    title: str, unit: str, *queries: prometheus.Dataquery, width: int = 12, stacked: bool = False
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(width)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if unit not in ("s", "percentunit"):
        panel = panel.min(0)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    for q in queries:
        panel = panel.with_target(q)
    return panel


def single(title: str, unit: str, expr: str, *, width: int = 6, description: str = "") -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(width)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(query(expr))
    )
    return panel.description(description) if description else panel


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title)
