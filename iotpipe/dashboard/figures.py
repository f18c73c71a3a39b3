"""Chart figures, built server-side with plotly's graph objects and sent to the page as JSON.

One figure per metric, one trace per device, so devices can be compared on one chart. The
page draws what it is given and appends live points; it also colours the traces (one colour
per device on every chart) and follows the reader's colour scheme and time zone.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go
import plotly.io as pio

from iotpipe.dashboard.series import Series


def _millis(t: list[float]) -> list[float]:
    """Unix milliseconds, which a plotly date axis reads as UTC; the page shifts them to the
    browser's time zone (plotly.js has none of its own). Numbers are also cheaper to send
    and to parse than date strings."""
    return [round(x * 1000, 3) for x in t]


def metric_figure(metric: str, unit: str, traces: dict[str, Series]) -> str:
    fig = go.Figure()
    for device, series in traces.items():
        fig.add_trace(
            go.Scatter(
                x=_millis(series.t),
                y=series.v,
                name=device,
                mode="lines",
                connectgaps=False,
                meta={"device": device, "source": series.source, "unit": unit},
            )
        )
    # plotly reads a few HTML tags in titles: a unit comes from a device, so it is escaped.
    shown = html.escape(unit)
    fig.update_layout(
        title={"text": f"{metric} ({shown})" if unit else metric},
        height=320,
        showlegend=True,
        xaxis={"type": "date"},
        yaxis={"title": {"text": shown}},
        # No template: the page sets every colour from its own scheme (light or dark), and
        # plotly_white took 80 ms of the 100 ms a figure cost to build.
        template="none",
        uirevision=metric,  # keep the user's zoom when the figure is replaced
    )
    text: str = pio.to_json(fig, validate=False)
    return text


def warm_up() -> None:
    """Build one small figure: plotly loads its validators on first use, which took a third
    of a second of the first page's first chart on a 2-core machine."""
    metric_figure("warm", "", {"warm": Series([0.0, 1.0], [0.0, 1.0], "raw")})
