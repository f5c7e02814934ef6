"""make bench's output: the table on screen and in results.md, results.json, and the plots."""
import json

from nodekit.rules import topics

TARGETS = {"a_p99_ms": 5.0, "b_p99_ms": 20.0, "cadence_max_ms": 10.0}
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


def _kb(v):
    return "-" if v is None else "%.1f" % (v / 1024.0)


def _caveat(b, chip, transport):
    """What a figure from binary b says about a board of that chip."""
    out = []
    if b["bits"] == 64:
        out.append("64-bit objects (about 1.4 times a board's)")
    if transport == "tls":
        if chip == "esp8266" and b["tls"] != "axtls":
            out.append("this VM's TLS allocates outside the heap, axTLS on the board inside it")
        elif chip != "esp8266" and b["tls"] == "axtls":
            out.append("axTLS in the heap here, mbedTLS outside the GC heap on the board (a lower bound)")
    return " - NOT a board figure: " + "; ".join(out) if out else ""


def memory_table(mem):
    """The per-board memory table (nodekit/bench/memory.py run()) and the issue's goals."""
    L = []
    add = L.append
    b = mem.get("binary")
    if not mem.get("profiles") or not b:
        return L
    add("Memory per board profile, measured by %s (MicroPython %s, %s). KB = 1024 bytes; "
        "\"board est.\" = the figure less the simulated board's own modules (in firmware on a board):"
        % (b["path"], b["version"], b["says"]))
    add("")
    add("| board (code) | figure | TLS | plaintext |")
    add("| --- | --- | --- | --- |")
    goals = []
    for p in mem["profiles"]:
        rows, res_b = p["rows"], p["residual"]
        name = "%s (%s)" % (p["profile"], "ROMFS image" if p["code"] == "romfs" else ".mpy files")

        def small(key):
            r = rows.get(key)
            if not r:
                return "-"
            if r.get("heap") is None:
                return "> 1024"
            est = r["heap"] - (res_b if key.startswith("node") else p.get("residual_bare", 0))
            return "%s (board est. %s)" % (_kb(r["heap"]), _kb(est))

        def free(t):
            r = rows.get("free-" + t)
            if not r:
                return "-"
            if not r.get("started"):
                return "does not start%s" % (" (MemoryError)" if r.get("memory_error") else "")
            return "%s (min %s)" % (_kb(r.get("free_median")), _kb(r.get("free_min")))

        add("| %s | smallest heap, the node | %s | %s |" % (name, small("node-tls"), small("node-plain")))
        add("| | smallest heap, bare umqtt.simple script | %s | %s |" % (small("bare-tls"), small("bare-plain")))
        trim = p.get("boot_allowance")
        add("| | free heap in steady state at %s KB + %s KB simulated board%s | %s | %s |" % (
            _kb(p["heap"]), _kb(res_b), " - %s KB so boot.py starts with %s KB free as on the board" % (
                _kb(trim), _kb(p["free_at_boot"])) if trim is not None else "", free("tls"), free("plain")))
        rc = (rows.get("free-tls") or {}).get("reconnects")
        if rc:
            add("| | reconnects in a row (connection killed at the broker) | %d of %d in %d s%s | |" % (
                rc["done"], rc["asked"], rc["seconds"], ", MemoryError" if rows["free-tls"].get("memory_error") else ""))
        for t in ("tls", "plain"):
            goal = p.get("goal_" + t)
            r = rows.get("free-" + t)
            if goal is None or r is None:
                continue
            v = r.get("free_median") if r.get("started") else None
            if r.get("started") is None:
                verdict = "not measured"
            elif v is None:
                verdict = "MISSED (the node does not start at %s KB)" % _kb(p["heap"])
            elif v >= goal:
                verdict = "met (%s KB free)" % _kb(v)
            else:
                verdict = "MISSED by %s KB (%s KB free)" % (_kb(goal - v), _kb(v))
            caveat = _caveat(b, p["chip"], t)
            goals.append("- goal %s: >= %g KB free over %s: %s%s" % (
                p["profile"], goal / 1024.0, "TLS" if t == "tls" else "plaintext", verdict, caveat))
        if p.get("reconnects") and rows.get("free-tls"):
            r = rows["free-tls"]
            rc = r.get("reconnects")
            ok = rc and rc["done"] >= p["reconnects"] and r.get("alive") and not r.get("memory_error")
            goals.append("- goal %s: %d reconnects over TLS without a MemoryError: %s%s" % (
                p["profile"], p["reconnects"], "met" if ok else "MISSED" + (
                    " (%d done)" % rc["done"] if rc else " (the node does not start)"),
                _caveat(b, p["chip"], "tls")))
    add("")
    L.extend(goals)
    if goals:
        add("")
    return L


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
        add("Command latency over TLS, period %s s, commands on %s at random times (ms):" %
            (lat[0]["period_s"], topics.LED_SET % "<room>"))
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
    L.extend(memory_table(mem))
    s = mem.get("steady")
    if s and "in_use_first" in s:
        add("- heap in use in steady state (node, TLS, .mpy, after gc.collect): %d bytes at start, %d at the end "
            "of %.0f s with %s commands (growth %+d bytes, slope %+.1f bytes/min)" % (
                s["in_use_first"], s["in_use_last"], s["duration_s"], s["commands"], s["growth_bytes"],
                s["slope_bytes_per_min"]))
    elif s:
        add("- heap in steady state: %s" % s.get("error"))
    if s:
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
