"""The Jinja2 template of the HTML run report (autoescaped; see `_html.view`).

It lives in a module rather than a data file so that it ships with the package
without any package-data configuration.
"""

from __future__ import annotations

__all__ = ["TEMPLATE"]

TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="lockgate">
<title>{{ r.suite }} → {{ r.target }}: {{ r.status }}</title>
<style>
:root { --pass: #1a7f37; --fail: #cf222e; --err: #8250df; --wait: #9a6700;
  --flaky: #bc4c00; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; padding: 28px 36px 48px; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; }
h1 { font-size: 24px; margin: 2px 0 4px; }
h2 { font-size: 16px; margin: 0 0 10px; }
header { display: flex; align-items: flex-start; justify-content: space-between; gap: 24px;
  border-bottom: 1px solid var(--line); padding-bottom: 14px; }
.eyebrow { text-transform: uppercase; letter-spacing: .06em; font-size: 11px;
  color: var(--muted); }
.target { color: var(--muted); font-size: 15px; }
.meta { color: var(--muted); font-size: 12.5px; margin-top: 6px; }
.badge { display: inline-block; border-radius: 999px; padding: 2px 10px; font-weight: 600;
  font-size: 12px; color: #fff; background: var(--muted); white-space: nowrap; }
.badge.big { font-size: 18px; padding: 6px 18px; letter-spacing: .04em; }
.s-passed { background: var(--pass); } .s-failed { background: var(--fail); }
.s-errored { background: var(--err); } .s-flaky { background: var(--flaky); }
.s-pending_review, .s-awaiting_review { background: var(--wait); }
.s-incomplete { background: var(--muted); }
.warnings { margin: 16px 0 0; padding: 10px 14px; background: #fff8c5;
  border: 1px solid #d4a72c; border-radius: 8px; }
.warnings li { margin: 2px 0; } .warnings ul { margin: 4px 0 0; padding-left: 20px; }
.grid { display: grid; grid-template-columns: 1.15fr 1fr 0.9fr; gap: 16px; margin-top: 18px; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
svg.bar { display: block; width: 100%; max-width: 480px; height: auto; margin: 8px 0 4px; }
.cases td.id { white-space: nowrap; }
.big-number { font-size: 34px; font-weight: 650; line-height: 1.1; }
.sub { color: var(--muted); font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; background: var(--soft); }
.kv td:first-child { color: var(--muted); width: 45%; }
.ok { color: var(--pass); font-weight: 700; } .ko { color: var(--fail); font-weight: 700; }
section { margin-top: 22px; }
.verdict-bad { color: var(--fail); font-weight: 650; }
.verdict-good { color: var(--pass); font-weight: 650; }
.chips a, .chips span { display: inline-block; margin: 2px 4px 2px 0; padding: 1px 8px;
  border-radius: 6px; font-size: 12.5px; text-decoration: none; }
.chip-bad { background: #ffebe9; color: var(--fail); border: 1px solid #ffcecb; }
.chip-good { background: #dafbe1; color: var(--pass); border: 1px solid #aceebb; }
.cases td { font-size: 13px; }
.cases td.text { max-width: 260px; overflow-wrap: anywhere; }
.cases tr.newly td:first-child { box-shadow: inset 4px 0 0 var(--fail); }
.cases tr.newly { background: #fff5f5; }
.cases tr:target { outline: 2px solid #0969da; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 2px;
  background: var(--muted); }
.dot.passed { background: var(--pass); } .dot.failed { background: var(--fail); }
.dot.errored { background: var(--err); } .dot.pending_review { background: var(--wait); }
.tag { font-size: 11px; border-radius: 4px; padding: 0 5px; margin-left: 4px;
  border: 1px solid currentColor; white-space: nowrap; }
.tag.flaky { color: var(--flaky); } .tag.newly { color: var(--fail); }
.reasons { margin: 0; padding-left: 16px; } .reasons li { margin: 0 0 2px; }
details pre { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--soft);
  padding: 8px; border-radius: 6px; max-height: 420px; overflow: auto; }
summary { cursor: pointer; color: #0969da; font-size: 12px; }
.toolbar { display: flex; gap: 6px; align-items: center; margin-bottom: 8px; }
.toolbar button { font: inherit; font-size: 12.5px; padding: 3px 10px; border-radius: 6px;
  border: 1px solid var(--line); background: var(--soft); cursor: pointer; }
.toolbar button.on { background: var(--ink); color: #fff; border-color: var(--ink); }
th[data-sort] { cursor: pointer; } .muted { color: var(--muted); }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
</style>
</head>
<body>
<header>
  <div>
    <div class="eyebrow">lockgate evaluation report</div>
    <h1>{{ r.suite }}</h1>
    <div class="target">→ {{ r.target }}</div>
    <div class="meta">run <span class="mono">{{ r.run_id }}</span> · started {{ r.started_at }}
      {%- if r.finished_at %} · finished {{ r.finished_at }}{% endif %}
      · {{ r.repeats }} repeat{{ "s" if r.repeats != 1 }} per case</div>
  </div>
  <span class="badge big s-{{ r.status }}">{{ r.status.replace("_", " ") | upper }}</span>
</header>

{% if r.warnings %}
<div class="warnings" role="note"><strong>Warnings</strong>
  <ul>{% for w in r.warnings %}<li>{{ w }}</li>{% endfor %}</ul>
</div>
{% endif %}

<div class="grid">
  <div class="card">
    <h2>Pass rate</h2>
    <div class="big-number">{{ rate }}</div>
    <div class="sub">{{ level }} interval {{ low }}&ndash;{{ high }} · {{ passed_attempts }} of
      {{ decided_attempts }} attempts passed{% if pending_attempts %} ·
      {{ pending_attempts }} awaiting review{% endif %}</div>
    <svg class="bar" viewBox="0 0 360 62" role="img"
         aria-label="pass rate {{ rate }}, interval {{ low }} to {{ high }}">
      <line x1="{{ bar.left }}" y1="30" x2="{{ bar.right }}" y2="30"
            stroke="#d1d9e0" stroke-width="2"/>
      {% for tx, label in bar.ticks %}
      <line x1="{{ tx }}" y1="26" x2="{{ tx }}" y2="34" stroke="#afb8c1"/>
      <text x="{{ tx }}" y="50" font-size="10" text-anchor="middle"
            fill="#59636e">{{ label }}</text>
      {% endfor %}
      <rect x="{{ bar.low }}" y="22" width="{{ bar.width }}" height="16" rx="4"
            fill="#b6d4fe" stroke="#0969da" stroke-width="1"/>
      {% if bar.threshold is not none %}
      <line x1="{{ bar.threshold }}" y1="12" x2="{{ bar.threshold }}" y2="44"
            stroke="#cf222e" stroke-width="2" stroke-dasharray="3 2"/>
      <text x="{{ bar.threshold }}" y="9" font-size="10" text-anchor="middle"
            fill="#cf222e">gate {{ bar.threshold_label }}</text>
      {% endif %}
      {% if bar.rate is not none %}
      <circle cx="{{ bar.rate }}" cy="30" r="5" fill="#0b3d91"/>
      {% endif %}
    </svg>
    <div class="sub">{{ r.cases | length }} cases:
      {% for status, n in by_status | dictsort %}{{ n }} {{ status.replace("_", " ") }}
      {%- if not loop.last %}, {% endif %}{% endfor %}</div>
  </div>

  <div class="card">
    <h2>Gate <span class="badge s-{{ 'passed' if r.gate_passed else 'failed' }}">
      {{- "passed" if r.gate_passed else "failed" }}</span></h2>
    {% if r.gate %}
    <table>
      {% for g in r.gate %}
      <tr><td class="{{ 'ok' if g.passed else 'ko' }}">{{ "✓" if g.passed else "✗" }}</td>
        <td class="mono">{{ g.detail }}</td></tr>
      {% endfor %}
    </table>
    {% else %}<p class="muted">This suite sets no gate conditions.</p>{% endif %}
  </div>

  <div class="card">
    <h2>Totals</h2>
    <table class="kv">
      {% for k, v in totals %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}
    </table>
  </div>
</div>

<section class="card">
  <h2>Compared with the baseline</h2>
  {% if comparison %}
  {% set c = comparison.c %}
  <p>Against <strong>{{ c.baseline_label }}</strong> (run <span class="mono">
    {{- c.baseline_run_id }}</span>) on {{ c.paired_cases }} paired cases:
    {% if c.significant_regression %}<span class="verdict-bad">significant regression</span>
    {% else %}<span class="verdict-good">no significant regression</span>{% endif %}.</p>
  <table class="kv" style="max-width: 720px">
    <tr><td>Newly failing (passed before, fail now)</td><td>{{ c.discordant_worse }}</td></tr>
    <tr><td>Newly passing (failed before, pass now)</td><td>{{ c.discordant_better }}</td></tr>
    <tr><td>McNemar exact test, two-sided p</td><td>{{ comparison.p_value }}</td></tr>
    <tr><td>Mean score change (paired bootstrap interval)</td>
      <td>{{ comparison.mean_diff }} ({{ comparison.low }} to {{ comparison.high }})</td></tr>
  </table>
  {% if comparison.newly_failing %}
  <p class="chips"><strong>Newly failing:</strong>
    {% for case, anchor in comparison.newly_failing %}
    {% if anchor %}<a class="chip-bad" href="#{{ anchor }}">{{ case }}</a>
    {% else %}<span class="chip-bad">{{ case }}</span>{% endif %}
    {% endfor %}</p>
  {% endif %}
  {% if comparison.newly_passing %}
  <p class="chips"><strong>Newly passing:</strong>
    {% for case, anchor in comparison.newly_passing %}
    {% if anchor %}<a class="chip-good" href="#{{ anchor }}">{{ case }}</a>
    {% else %}<span class="chip-good">{{ case }}</span>{% endif %}
    {% endfor %}</p>
  {% endif %}
  {% else %}
  <p class="muted">No baseline run to compare with.</p>
  {% endif %}
</section>

{% if metrics %}
<section class="card">
  <h2>Metrics</h2>
  <table class="kv" style="max-width: 520px">
    {% for name, value in metrics %}<tr><td>{{ name }}</td><td class="mono">{{ value }}</td></tr>
    {% endfor %}
  </table>
</section>
{% endif %}

<section>
  <h2>Cases</h2>
  <div class="toolbar" id="filters">
    <button type="button" class="on" data-filter="all">All</button>
    <button type="button" data-filter="bad">Not passing</button>
    <button type="button" data-filter="flaky">Flaky</button>
    <button type="button" data-filter="newly">Newly failing</button>
    <span class="sub">Attempts: <span class="dot passed"></span>passed
      <span class="dot failed"></span>failed <span class="dot errored"></span>errored
      <span class="dot pending_review"></span>awaiting review</span>
  </div>
  <table class="cases" id="cases">
    <thead><tr>
      <th data-sort="text">Case</th><th data-sort="text">Status</th>
      <th data-sort="num">Attempts</th><th data-sort="num">Score</th>
      <th>Input</th><th>Expected</th><th>Output</th><th>Scorer reasons</th>
    </tr></thead>
    <tbody>
    {% for c in cases %}
    <tr id="{{ c.anchor }}" data-status="{{ c.status }}" data-flaky="{{ c.flaky | lower }}"
        data-newly="{{ c.newly_failing | lower }}"{% if c.newly_failing %} class="newly"{% endif %}>
      <td class="mono id">{{ c.id }}</td>
      <td><span class="badge s-{{ c.status }}">{{ c.label }}</span>
        {% if c.flaky and c.status != "flaky" %}<span class="tag flaky">flaky</span>{% endif %}
        {% if c.newly_failing %}<span class="tag newly">newly failing</span>{% endif %}</td>
      <td data-value="{{ c.rate }}">{% for d in c.dots %}<span class="dot {{ d.status }}"
        title="{{ d.title }}"></span>{% endfor %}<br><span class="sub">{{ c.tally }}</span></td>
      <td data-value="{{ c.score_value }}">{{ c.score }}</td>
      {% for t in (c.input, c.expected, c.output) %}
      <td class="text">{{ t.preview }}{% if t.full %}<details><summary>full text</summary>
        <pre>{{ t.full }}</pre></details>{% endif %}
        {% if loop.last and c.output_attempt %}<div class="sub">attempt {{ c.output_attempt }}</div>
        {% endif %}</td>
      {% endfor %}
      <td class="text">{% if c.reasons %}<ul class="reasons">{% for reason in c.reasons %}
        <li>{{ reason }}</li>{% endfor %}</ul>{% else %}<span class="muted">—</span>{% endif %}</td>
    </tr>
    {% endfor %}
    </tbody>
  </table>
</section>

<section>
  <details><summary>Run manifest (what exactly ran)</summary><pre>{{ manifest }}</pre></details>
</section>
<footer>Generated by lockgate · run {{ r.run_id }}
  · duration {{ "%.1f" | format(r.duration_s) }} s</footer>
<script>
(function () {
  var table = document.getElementById("cases"), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var keep = {
    all: function () { return true; },
    bad: function (r) { return r.dataset.status !== "passed"; },
    flaky: function (r) { return r.dataset.flaky === "true"; },
    newly: function (r) { return r.dataset.newly === "true"; }
  };
  document.getElementById("filters").addEventListener("click", function (e) {
    var name = e.target.getAttribute("data-filter");
    if (!name) { return; }
    document.querySelectorAll("#filters button").forEach(function (b) {
      b.classList.toggle("on", b === e.target);
    });
    rows.forEach(function (r) { r.style.display = keep[name](r) ? "" : "none"; });
  });
  table.tHead.addEventListener("click", function (e) {
    var th = e.target.closest("th[data-sort]");
    if (!th) { return; }
    var i = th.cellIndex, num = th.dataset.sort === "num", dir = th.dataset.dir === "1" ? -1 : 1;
    th.dataset.dir = dir === 1 ? "1" : "-1";
    rows.sort(function (a, b) {
      var x = num ? parseFloat(a.cells[i].dataset.value) : a.cells[i].textContent.trim();
      var y = num ? parseFloat(b.cells[i].dataset.value) : b.cells[i].textContent.trim();
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
})();
</script>
</body>
</html>
"""
