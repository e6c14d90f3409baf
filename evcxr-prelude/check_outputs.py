"""Check that executed notebooks carry the rich outputs they promise: every notebook at least one
inline SVG chart (image/svg+xml) and notebooks 01, 03, 04, 05 and 06 an HTML table; no error outputs
and nothing on stderr (evcxr reports an `Err` returned by a cell with `?` on stderr, not as an
error output, so a silent failure would otherwise pass); no table shown as Debug text.

usage: check_outputs.py EXECUTED_NOTEBOOK...
"""
import re
import sys

import nbformat

NEEDS_TABLE = ("01-", "03-", "04-", "05-", "06-")
# Notebooks with more than one chart to show: the least number of SVG charts.
MIN_SVG = {"02-": 5, "03-": 4, "05-": 7, "06-": 2}
# What no output may show a reader: evcxr's timing lines, paths of the machine that ran it,
# references outside the repository.
READER_NEVER_SEES = (r"Took \d+ ?ms", r"/work/", r"/home/", r"/root/", r"/tmp/", r"shared/")
# Notebooks that teach with formulas: the least number of LaTeX display formulas ($$ … $$).
MIN_FORMULAS = {"02-": 6}


def main():
    problems = []
    for path in sys.argv[1:]:
        nb = nbformat.read(path, as_version=4)
        name = path.rsplit("/", 1)[-1]
        svg = html_tables = errors = png = 0
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    errors += 1
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    errors += 1
                    print(f"{name}: stderr: {out.get('text', '')[:300]}")
                data = out.get("data", {})
                chart = data.get("image/svg+xml", "")
                svg += "<svg" in chart
                if re.search(r'(width|height)="-', chart):
                    problems.append(f"{name}: an SVG element with a negative size (browsers draw nothing)")
                text = "".join(out.get("text", "")) + "".join(data.get("text/plain", ""))
                for bad in READER_NEVER_SEES:
                    if re.search(bad, text + chart):
                        problems.append(f"{name}: output matches {bad!r}")
                html_tables += "<table" in data.get("text/html", "")
                # evcxr falls back to Debug text when a cell's last expression moves a variable it
                # keeps (`Table::new(df)` of a top-level `df`): the reader sees `Table { df: … }`.
                if "text/html" not in data and "".join(data.get("text/plain", "")).lstrip().startswith("Table {"):
                    problems.append(f"{name}: a table shown as Debug text, not HTML (clone the moved variable)")
                png += bool(data.get("image/png"))
        print(f"{name}: {svg} SVG charts, {html_tables} HTML tables, {png} PNG images, {errors} errors")
        if errors:
            problems.append(f"{name}: {errors} error or stderr outputs")
        formulas = sum("".join(c.source).count("$$") // 2 for c in nb.cells if c.cell_type == "markdown")
        need = next((n for p, n in MIN_FORMULAS.items() if name.startswith(p)), 0)
        if formulas < need:
            problems.append(f"{name}: {formulas} display formulas, expected at least {need}")
        least = next((n for p, n in MIN_SVG.items() if name.startswith(p)), 1)
        if svg < least:
            problems.append(f"{name}: {svg} SVG charts, expected at least {least}")
        if name.startswith(NEEDS_TABLE) and html_tables == 0:
            problems.append(f"{name}: no HTML table")
    if problems:
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
