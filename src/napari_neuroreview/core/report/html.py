"""The case report as one HTML file: every image embedded (base64 PNG), print-ready CSS, no script.

Why one file: a report is mailed, attached to a ticket or archived; a page that loads
images from beside it breaks as soon as it is moved. Every text from the store or a
result file is escaped (a reviewer may type ``<`` in a name). Element ids (``header``,
``not-for-clinical-use``, ``microbleeds``, ``cmb-<id>``, ``rejected``, ``subtype``,
``mars``, ``networks``) are the page's contract with its tests.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from ... import __version__
from .content import NOT_FOR_CLINICAL_USE, ReportContent, ReportFinding, mars_table
from .key_images import CONVENTION

__all__ = ["build_html", "png_data_uri"]

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #111; margin: 1.2em 2em; }
h1 { font-size: 16pt; margin: 0 0 .2em 0; } h2 { font-size: 12.5pt; border-bottom: 1px solid #999; margin: 1.2em 0 .4em; }
.warning { background: #fff3cd; border: 1px solid #e0b400; padding: .35em .6em; font-weight: bold; }
table { border-collapse: collapse; margin: .3em 0; } th, td { border: 1px solid #bbb; padding: .15em .5em; text-align: left; }
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { width: 11em; }
.cmbs { display: flex; flex-wrap: wrap; gap: .6em; }
figure.cmb { margin: 0; border: 1px solid #bbb; padding: .25em; width: 506px; break-inside: avoid; page-break-inside: avoid; }
figure.cmb img { width: 506px; display: block; } figure.cmb figcaption { font-size: 9pt; margin-top: .2em; }
.bar { display: inline-block; height: .8em; background: #3a6ea5; vertical-align: middle; }
.bar.top { background: #c0392b; } .muted { color: #555; } img.thumb { height: 130px; display: block; }
section { break-inside: auto; } footer { margin-top: 2em; font-size: 8.5pt; color: #555; }
@page { size: A4; margin: 12mm; }
"""


def png_data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI, so the page holds its own images."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], table_id: str = "", numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if n in numeric else ""}>{escape(str(v))}</td>' for n, v in enumerate(row))
        + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None, fmt: str = "{:.2f}", missing: str = "n/a") -> str:
    return missing if value is None else fmt.format(value)


def _place(f: ReportFinding) -> str:
    return "({:.1f}, {:.1f}, {:.1f})".format(*f.world_ras_mm)


def _region(f: ReportFinding) -> str:
    if f.region is None:
        return "not known"
    if f.region == "outside":
        return f"outside the MARS regions, {f.side}"
    return f"{f.region.replace('_', ' ')} ({f.mars_class}), {f.side}"


def _caption(f: ReportFinding) -> str:
    origin = "added by the reviewer" if f.source == "user" else "model detection"
    parts = [f"<b>#{f.id}</b> {escape(f.status)} ({origin})", f"region: {escape(_region(f))}",
             f"size: {_num(f.diameter_mm, '{:.1f} mm')} diameter, {_num(f.volume_mm3, '{:.0f} mm&sup3;')}",
             f"score: {_num(f.score)}", f"RAS {_place(f)} mm"]
    return " &middot; ".join(parts)


def _header(content: ReportContent) -> str:
    facts = [("Scan", content.label), ("File", content.scan_name),
             ("Grid", " x ".join(map(str, content.shape)) + " voxels of "
              + " x ".join(f"{v:.2g}" for v in content.voxel_mm) + " mm"),
             ("Voxel data sha256", content.sha256), ("Report made", content.generated_at)]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return (f'<header id="header"><h1>Microbleed review: {escape(content.label)}</h1>'
            f'<p class="warning" id="not-for-clinical-use">{escape(NOT_FOR_CLINICAL_USE)}</p>'
            f'<table class="facts">{rows}</table></header>')


def _review(content: ReportContent) -> str:
    counted, statuses = content.counted, [f.status for f in content.counted]
    split = ", ".join(f"{statuses.count(s)} {s}" for s in ("accepted", "added", "moved") if s in statuses)
    summary = (f"{len(counted)} microbleed{'s' * (len(counted) != 1)} count{'s' * (len(counted) == 1)}"
               f"{f' ({split})' if split else ''}; {len(content.rejected)} rejected; "
               f"{len(content.pending)} not reviewed.")
    reviewers = (_table(("Reviewer", "Decisions", "First", "Last"),
                        [(r.reviewer, r.decisions, r.first, r.last) for r in content.reviewers], "reviewers", (1,))
                 if content.reviewers else "<p>No reviewer decision is stored for this scan.</p>")
    signed = (f'<p id="signed-off"><b>Signed off:</b> {escape(content.signed_off)}</p>' if content.signed_off
              else f'<p id="review-state"><b>Review state:</b> {escape(content.state)} (not signed off)</p>')
    models = _table(("Used for", "Model", "Version", "Weights"),
                    [(m.role, m.name, m.version, "demo (trained on simulated data)" if m.demo else "")
                     for m in content.models], "models") if content.models else "<p>No model output is shown.</p>"
    return (f'<section id="review"><h2>Review</h2><p id="summary">{escape(summary)}</p>{signed}{reviewers}</section>'
            f'<section id="model-versions"><h2>Model versions</h2>{models}</section>')


def _microbleeds(content: ReportContent, key_image: Callable[[ReportFinding], bytes]) -> str:
    counted = content.counted
    if not counted:
        figures = "<p>No microbleed counts on this scan.</p>"
    else:
        figures = '<div class="cmbs">' + "".join(
            f'<figure class="cmb" id="cmb-{f.id}"><img alt="microbleed {f.id}: axial and coronal crops" '
            f'src="{png_data_uri(key_image(f))}"><figcaption>{_caption(f)}</figcaption></figure>'
            for f in counted) + "</div>"
    regions = (f"Regions: {escape(content.regions_note)}" if content.regions_note else
               "Regions: MARS (Neuromorphometrics atlas) after registering the scan to MNI152; L/R is the "
               "patient's side.")
    return (f'<section id="microbleeds"><h2>Microbleeds that count ({len(counted)})</h2>'
            f'<p class="muted" id="orientation">{escape(CONVENTION)} A ring marks each microbleed; '
            f"the bar is 10 mm. Positions are world RAS+ mm of the scan. {regions}</p>{figures}</section>")


def _listed(content: ReportContent) -> str:
    out = []
    for ident, title, findings in (("rejected", "Rejected findings", content.rejected),
                                   ("pending", "Findings not reviewed", content.pending)):
        if findings:
            rows = [(f.id, f.source, _num(f.score), _place(f), _region(f)) for f in findings]
            out.append(f'<section id="{ident}"><h2>{title} ({len(findings)})</h2>'
                       + _table(("Id", "Source", "Score", "RAS mm", "Region"), rows, numeric=(0, 2)) + "</section>")
    return "".join(out)


def _bar(p: float, top: bool) -> str:
    return f'<span class="bar{" top" if top else ""}" style="width:{max(0.0, min(1.0, p)) * 12:.2f}em"></span>'


def _subtype(doc: dict[str, Any]) -> str:
    probabilities = {str(k): float(v) for k, v in doc["probabilities"].items()}
    best = max(probabilities, key=probabilities.get)
    rows = "".join(f'<tr><th>{escape(c)}</th><td class="num">{p:.0%}</td><td>{_bar(p, c == best)}</td></tr>'
                   for c, p in probabilities.items())
    table = mars_table(doc)
    mars = _table(("MARS class", "left", "right", "total"),
                  [(c, t["left"], t["right"], t["total"]) for c, t in table.items()], "mars", (1, 2, 3))
    return (f'<section id="subtype"><h2>Small vessel disease subtype</h2>'
            f"<p>Most probable: <b>{escape(best)}</b> (from {len(doc.get('cmbs') or [])} microbleeds of the "
            f"subtype result; regions from the Neuromorphometrics atlas after registration to MNI152).</p>"
            f'<table id="subtype-probabilities">{rows}</table><h3>MARS microbleed counts</h3>{mars}</section>')


def _networks(doc: dict[str, Any], thumbnails: dict[str, bytes]) -> str:
    rows = []
    for name, entry in doc["networks"].items():
        cells = [f"<th>{escape(str(name))}</th>"]
        for state in ("pre", "post"):
            p = entry[state].get("p_post")
            value = "n/a" if p is None else f"{float(p):.0%} {_bar(float(p), False)}"
            cells.append(f"<td>{value}</td>")
        thumb = thumbnails.get(str(name))
        cells.append(f'<td><img class="thumb" alt="{escape(str(name))} pre and post" src="{png_data_uri(thumb)}"></td>'
                     if thumb else "<td></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    scans = f"pre: {escape(str(doc.get('pre', '?')))}, post: {escape(str(doc.get('post', '?')))}"
    head = "<tr><th>Network</th><th>P(post) of the pre scan</th><th>P(post) of the post scan</th>"
    head += "<th>Maps (pre | post)</th></tr>" if thumbnails else "<th></th></tr>"
    return (f'<section id="networks"><h2>Resting-state networks before and after surgery</h2>'
            f"<p>{scans}. P(post) is the model's probability that a network's map and time course come from "
            f"a post-operative scan.</p><table>{head}{''.join(rows)}</table></section>")


def build_html(content: ReportContent, key_image: Callable[[ReportFinding], bytes],
               network_thumbnails: dict[str, bytes] | None = None) -> str:
    """The whole page; ``key_image(finding)`` gives each counted microbleed's PNG."""
    parts = [_header(content), _review(content), _microbleeds(content, key_image), _listed(content)]
    if content.subtype is not None:
        parts.append(_subtype(content.subtype))
    if content.networks is not None:
        parts.append(_networks(content.networks, network_thumbnails or {}))
    parts.append(f"<footer>napari-neuroreview {escape(__version__)}. {escape(NOT_FOR_CLINICAL_USE)}</footer>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(content.label)}: '
            f"microbleed review report</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
