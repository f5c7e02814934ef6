"""make bench's output: the table on screen and in results.md, results.json, and the plots."""
import json

TARGETS = {"a_p99_ms": 5.0, "b_p99_ms": 20.0, "cadence_max_ms": 10.0, "heap_tls_mpy": 32 * 1024,
           "heap_plain_mpy": 16 * 1024}
RT = {"cpython": "CPython", "micropython": "MicroPython VM"}


def _f(v, fmt="%.1f"):
    return "-" if v is None else fmt % v


def _verdict(value, target, unit="ms"):
    if value is None:
        return "not measured"
    if value <= target:
        return "met (<= %g %s)" % (target, unit)
    return "MISSED by %s %s (target %g)" % (_f(value - target, "%.3g"), unit, target)


def ratios(results):
    """naive / node, per runtime, for the medians and the 99th percentiles."""
    by = {(r.get("client"), r.get("runtime")): r for r in results.get("latency", []) if "a_ms" in r}
    out = {}
    for rt in RT:
        node, naive = by.get(("node", rt)), by.get(("naive", rt))
        if node and naive:
            out[rt] = {}
            for fig in ("a_ms", "b_ms"):
                for q in ("p50", "p99"):
                    a, b = naive[fig][q], node[fig][q]
                    out[rt]["%s_%s" % (fig[0], q)] = round(a / b) if a and b else None
    return out


def table(res):
    L = []
    add = L.append
    env = res.get("environment", {})
    add("Measured by `%s` on %s (%s; %s; Mosquitto: %s), %s. One run; medians and ratios from it." % (
        res.get("command"), env.get("machine"), env.get("system"), env.get("micropython"),
        env.get("mosquitto"), env.get("date")))
    add("")
    lat = [r for r in res.get("latency", []) if "a_ms" in r]
    if lat:
        add("Command latency over TLS, period %s s, commands on maison/<room>/led/set at random times (ms):" %
            lat[0]["period_s"])
        add("")
        add("| runtime | loop | commands | (a) in the board p50 / p99 / max | (b) client to echo p50 / p99 / max |")
        add("| --- | --- | --- | --- | --- |")
        for r in lat:
            a, b = r["a_ms"], r["b_ms"]
            add("| %s | %s | %d | %s / %s / %s | %s / %s / %s |" % (
                RT[r["runtime"]], "node" if r["client"] == "node" else "naive (sleep, check_msg)", r["commands"],
                _f(a["p50"], "%.2f"), _f(a["p99"], "%.2f"), _f(a["max"], "%.2f"),
                _f(b["p50"], "%.2f"), _f(b["p99"], "%.2f"), _f(b["max"], "%.2f")))
        add("")
        for rt, q in res.get("latency_ratios", {}).items():
            add("- %s: naive / node = %sx (a, p50), %sx (a, p99), %sx (b, p50), %sx (b, p99)" % (
                RT[rt], q["a_p50"], q["a_p99"], q["b_p50"], q["b_p99"]))
        for r in lat:
            if r["client"] == "node":
                add("- target %s: (a) p99 %s; (b) p99 %s" % (
                    RT[r["runtime"]], _verdict(r["a_ms"]["p99"], TARGETS["a_p99_ms"]),
                    _verdict(r["b_ms"]["p99"], TARGETS["b_p99_ms"])))
        add("")
    cad = res.get("cadence", {})
    rows = [r for r in cad.get("short", []) + cad.get("real", []) if "max_ms" in r]
    if rows:
        add("Cadence: how late each reading left against t0 + k x period (ms):")
        add("")
        add("| runtime | period | readings | mean | p99 | max | drift over the run | missing |")
        add("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            add("| %s | %g s | %d (%.0f s) | %.2f | %.2f | %.2f | %+.2f | %d |" % (
                RT[r["runtime"]], r["period_s"], r["readings"], r["duration_s"], r["mean_ms"], r["p99_ms"],
                r["max_ms"], r["drift_ms"], r["missing"]))
        add("")
        for r in rows:
            add("- target %s at %g s: max %s" % (RT[r["runtime"]], r["period_s"],
                                                  _verdict(r["max_ms"], TARGETS["cadence_max_ms"])))
        add("")
    for key in ("short", "real"):
        for r in cad.get(key, []):
            if "error" in r:
                add("- cadence %s: %s" % (key, r["error"]))
    st = res.get("startup", [])
    if st:
        add("Start-up: process start to the first reading at the broker (ms, median of %d):" % st[0]["runs"])
        add("")
        add("| runtime | code | TLS | plaintext |")
        add("| --- | --- | --- | --- |")
        by = {(r["runtime"], r["code"], r["transport"]): r for r in st}
        for rt, code in sorted({(r["runtime"], r["code"]) for r in st}, key=lambda x: (x[0] != "cpython", x[1] != "py")):
            add("| %s | .%s | %s | %s |" % (RT[rt], code, _f(by.get((rt, code, "tls"), {}).get("median_ms"), "%.0f"),
                                            _f(by.get((rt, code, "plain"), {}).get("median_ms"), "%.0f")))
        add("")
    mem = res.get("memory", {})
    sm = mem.get("smallest", [])
    if sm:
        add("Memory, MicroPython VM (64-bit unix port: a 32-bit board's figures are smaller): smallest heap "
            "(-X heapsize) that runs it, KB:")
        add("")
        add("| what | TLS .mpy | TLS .py | plaintext .mpy | plaintext .py |")
        add("| --- | --- | --- | --- | --- |")
        by = {(r["client"], r["transport"], r["code"]): r for r in sm}
        for client in ("node", "bare"):
            cells = []
            for t, c in (("tls", "mpy"), ("tls", "py"), ("plain", "mpy"), ("plain", "py")):
                r = by.get((client, t, c))
                cells.append("-" if not r else ("> 1024" if r["heap"] is None else "%d" % (r["heap"] // 1024)))
            add("| %s | %s |" % ("the node" if client == "node" else "bare umqtt.simple script", " | ".join(cells)))
        add("")
        hw = mem.get("sim_hardware_bytes")
        if hw:
            add("- the node's figures include %.1f KB held by the simulated machine and network modules "
                "(.mpy; in firmware on a board)" % (hw / 1024.0))
        for t, key in (("tls", "heap_tls_mpy"), ("plain", "heap_plain_mpy")):
            r = by.get(("node", t, "mpy"))
            if r:
                add("- target node %s .mpy: %s" % (t, _verdict(r["heap"] and r["heap"] / 1024.0,
                                                               TARGETS[key] / 1024, "KB")))
    s = mem.get("steady")
    if s and "in_use_first" in s:
        add("- heap in use in steady state (node, TLS, .mpy, after gc.collect): %d bytes at start, %d at the end "
            "of %.0f s with %s commands (growth %+d bytes, slope %+.1f bytes/min)" % (
                s["in_use_first"], s["in_use_last"], s["duration_s"], s["commands"], s["growth_bytes"],
                s["slope_bytes_per_min"]))
    elif s:
        add("- heap in steady state: %s" % s.get("error"))
    if sm or s:
        add("")
    wi = [r for r in res.get("wire", []) if r.get("segments") is not None]
    if wi:
        add("Bytes on the wire per reading (tshark on lo; medians over the readings):")
        add("")
        add("| runtime | transport | publisher | QoS | segments out | bytes out (payload / frames) | TLS records | segments back |")
        add("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in wi:
            add("| %s | %s | %s | %d | %g | %g / %g | %s | %g |" % (
                RT[r["runtime"]], r["transport"], "node" if r["client"] == "node" else "umqtt.simple publish()",
                r["qos"], r["segments"], r["bytes"], r["frame_bytes"], _f(r["tls_records"], "%g"), r["segments_back"]))
        add("")
    fl = res.get("fleet")
    if fl:
        if "error" in fl:
            add("Fleet: %s" % fl["error"])
        else:
            add("Fleet (%s, %s): largest sustained %s nodes; %s; target met: %s" % (
                RT.get(fl.get("runtime"), fl.get("runtime")), fl.get("target"), fl.get("largest_sustained"),
                fl.get("saturated") or fl.get("closest_to_limit") or fl.get("stopped_by") or "-", fl.get("target_met")))
        add("")
    sec = res.get("seconds", {})
    add("Run time: %s s (%s)." % (sec.get("total"), ", ".join("%s %s s" % (k, v) for k, v in sec.items() if k != "total")))
    return "\n".join(L)


def plots(res, out):
    """latency.png (distributions of (a) and (b)) and cadence.png (deviation over time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    lat = [r for r in res.get("latency", []) if r.get("a_samples") or r.get("b_samples")]
    if lat:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, key, title in ((axes[0], "a_samples", "(a) in the board: command bytes on its socket -> LED pin"),
                               (axes[1], "b_samples", "(b) outside: client publish -> LED echo back")):
            for r in lat:
                xs = sorted(v for v in r[key] if v > 0)
                if xs:
                    ys = [(i + 1) / len(xs) for i in range(len(xs))]
                    ax.step(xs, ys, where="post", label="%s, %s (p99 %.2f ms)" % (
                        "node" if r["client"] == "node" else "naive loop", RT[r["runtime"]],
                        r[key[0] + "_ms"]["p99"]))
            ax.set_xscale("log")
            ax.set_xlabel("ms (log scale)")
            ax.set_ylabel("fraction of commands")
            ax.set_title(title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
        fig.suptitle("Command latency over TLS, %d commands per line, period %s s (make bench)" % (
            lat[0]["commands"], lat[0]["period_s"]))
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        written.append(out / "latency.png")
    cad = res.get("cadence", {})
    rows = [r for r in cad.get("short", []) + cad.get("real", []) if r.get("series")]
    if rows:
        fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.4 * len(rows)), squeeze=False)
        for ax, r in zip(axes[:, 0], rows):
            xs = [p[0] for p in r["series"]]
            ys = [p[1] for p in r["series"]]
            ax.plot(xs, ys, ".-", markersize=3, linewidth=0.6)
            ax.axhline(10, color="red", linewidth=0.6, linestyle="--")
            ax.set_title("%s, period %g s: each reading's publish time - (t0 + k x period); max %.2f ms, drift %+.2f ms"
                         % (RT[r["runtime"]], r["period_s"], r["max_ms"], r["drift_ms"]), fontsize=9)
            ax.set_ylabel("ms late")
            ax.grid(True, alpha=0.3)
        axes[-1, 0].set_xlabel("s since the first reading on the grid")
        fig.tight_layout()
        fig.savefig(out / "cadence.png", dpi=110)
        plt.close(fig)
        written.append(out / "cadence.png")
    return written


def finish(res, out):
    res["latency_ratios"] = ratios(res)
    text = table(res)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "results.md").write_text(text + "\n")
    written = plots(res, out)
    print(text)
    print("\nbench: wrote %s" % ", ".join(str(p) for p in [out / "results.json", out / "results.md"] + written))
