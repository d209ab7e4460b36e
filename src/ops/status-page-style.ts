/** Style sheet of the status page, served as `/status.css`. */
export const STATUS_PAGE_STYLE = `
:root {
  --fg: #1d2330;
  --muted: #5b6475;
  --line: #d9dde5;
  --bg: #f6f7f9;
  --card: #ffffff;
  --ok: #1f7a3f;
  --warn: #a15c00;
  --bad: #b3261e;
  --series-delivered: #2563c9;
  --series-failed: #c0392b;
  --series-lag: #6b46c1;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  font-size: 14px;
  color: var(--fg);
  background: var(--bg);
}
body { margin: 0 auto; max-width: 1100px; padding: 16px 24px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h1 .slot { font-size: 15px; font-weight: normal; color: var(--muted); margin-left: 8px; }
h2 { font-size: 16px; margin: 0 0 10px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; margin: 14px 0; }
.muted { color: var(--muted); }
.role { display: inline-block; padding: 3px 10px; border-radius: 12px; font-weight: 600; color: #fff; background: var(--muted); }
.role-leader { background: var(--ok); }
.role-standby { background: #2f5d9e; }
.role-none { background: var(--bad); }
.not-ready { outline: 3px solid var(--bad); }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
.condition-ok { color: var(--ok); font-weight: 600; }
.condition-warn { color: var(--warn); font-weight: 600; }
.condition-bad { color: var(--bad); font-weight: 600; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.charts figure { margin: 0; }
.charts figcaption { font-weight: 600; margin-bottom: 6px; }
.chart svg { width: 100%; height: auto; display: block; }
.chart .axis { stroke: var(--line); stroke-width: 1; }
.chart .label { fill: var(--muted); font-size: 11px; }
.chart .series-delivered { stroke: var(--series-delivered); fill: var(--series-delivered); }
.chart .series-failed { stroke: var(--series-failed); fill: var(--series-failed); }
.chart .series-lag { stroke: var(--series-lag); fill: var(--series-lag); }
.chart polyline.series-delivered, .chart polyline.series-failed, .chart polyline.series-lag { fill: none; stroke-width: 2; }
.chart .legend { font-size: 12px; margin-top: 4px; }
.chart .legend span { margin-right: 14px; }
.chart .legend .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; vertical-align: -1px; }
.chart .legend .swatch.series-delivered { background: var(--series-delivered); }
.chart .legend .swatch.series-failed { background: var(--series-failed); }
.chart .legend .swatch.series-lag { background: var(--series-lag); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.number { font-variant-numeric: tabular-nums; }
td.error { max-width: 360px; overflow-wrap: anywhere; }
.admin { display: flex; gap: 10px; align-items: center; margin-bottom: 8px; }
.admin input { width: 320px; padding: 4px 6px; }
button { padding: 3px 10px; }
button:disabled { cursor: not-allowed; }
.redelivered { color: var(--ok); }
@media (max-width: 800px) { .charts { grid-template-columns: 1fr; } }
`;
