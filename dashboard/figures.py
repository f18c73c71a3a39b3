"""Chart figures, built server-side with plotly's graph objects and sent to the page as JSON.

One figure per metric, one trace per device, so devices can be compared on one chart. The
page only draws what it is given and appends live points; layout decisions live here.
"""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
import plotly.io as pio
from iotpipe.dashboard.series import Series


def _dates(t: list[float]) -> list[str]:
    """UTC without an offset, as the page writes live points: plotly.js shows dates as
    given and has no time zones, so the whole page is in UTC."""
    return [dt.datetime.fromtimestamp(x, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for x in t]


def metric_figure(metric: str, unit: str, traces: dict[str, Series]) -> str:
    fig = go.Figure()
    for device, series in traces.items():
        fig.add_trace(
            go.Scatter(
                x=_dates(series.t),
                y=series.v,
                name=device,
                mode="lines",
                connectgaps=False,
                meta={"device": device, "source": series.source},
            )
        )
    fig.update_layout(
        title={"text": f"{metric} ({unit})" if unit else metric},
        margin={"l": 48, "r": 16, "t": 40, "b": 32},
        height=320,
        showlegend=True,
        legend={"orientation": "h", "y": -0.2},
        xaxis={"type": "date"},
        yaxis={"title": {"text": unit}},
        template="plotly_white",
        uirevision=metric,  # keep the user's zoom when the figure is replaced
    )
    text: str = pio.to_json(fig, validate=False)
    return text
