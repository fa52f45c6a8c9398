#!/usr/bin/env python3
# Writes deploy/grafana/mediapipe.json, the Grafana dashboard: edit the panels
# here and run `python3 deploy/grafana/generate.py` from the repository root.
# internal/e2e's TestDashboardMetricsExist checks every metric it queries.
import json
DS = {"type": "prometheus", "uid": "prometheus"}
I = 'instance=~"$instance"'
IS = 'instance=~"$instance",stream=~"$stream"'
panels = []
y = 0
def panel(title, exprs, unit, kind="timeseries", w=12, h=8, x=0, desc=""):
    global y
    p = {"type": kind, "title": title, "description": desc, "datasource": DS,
         "gridPos": {"h": h, "w": w, "x": x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {},
         "targets": [{"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(65+i)} for i,(e,l) in enumerate(exprs)]}
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}, "tooltip": {"mode": "multi"}}
    panels.append(p)
    return p
def row():
    global y
    y += 8
panel("Live streams", [(f'count by (instance, pipeline) (mediapipe_stream_start_time_seconds{{{I}}})', "{{instance}} {{pipeline}}")], "short", kind="stat", w=6, h=4)
panel("Viewers", [(f'sum by (instance) (mediapipe_stream_viewers{{{I}}})', "{{instance}}")], "short", kind="stat", w=6, h=4, x=6)
panel("Egress", [(f'sum by (instance) (rate(mediapipe_stream_out_bytes_total{{{I}}}[1m])) * 8', "{{instance}}")], "bps", kind="stat", w=6, h=4, x=12)
panel("Drops / s", [(f'sum by (instance) (rate(mediapipe_stage_drops_total{{{I}}}[1m]))', "{{instance}}")], "short", kind="stat", w=6, h=4, x=18)
y += 4
panel("Ingest bitrate per stream", [(f'rate(mediapipe_stream_in_bytes_total{{{IS}}}[1m]) * 8', "{{instance}} {{pipeline}} {{stream}}")], "bps",
      desc="What each pipeline's source receives: RTMP media on a cloud, RTP on an edge.")
panel("Egress bitrate per stream", [(f'rate(mediapipe_stream_out_bytes_total{{{IS}}}[1m]) * 8', "{{instance}} {{pipeline}} {{stream}}")], "bps", x=12,
      desc="Sent to viewers (HTTP-FLV and HLS).")
row()
panel("Viewers per stream", [(f'mediapipe_stream_viewers{{{IS}}}', "{{instance}} {{pipeline}} {{stream}}")], "short")
panel("Stream uptime", [(f'time() - mediapipe_stream_start_time_seconds{{{IS}}}', "{{instance}} {{pipeline}} {{stream}}")], "s", x=12)
row()
panel("Loss, repaired, skipped (edges)", [
    (f'sum by (instance, stream) (rate(mediapipe_stream_lost_packets_total{{{IS}}}[1m]))', "lost {{instance}} {{stream}}"),
    (f'sum by (instance, stream) (rate(mediapipe_stream_repaired_packets_total{{{IS}}}[1m]))', "repaired {{instance}} {{stream}}"),
    (f'sum by (instance, stream) (rate(mediapipe_stream_skipped_packets_total{{{IS}}}[1m]))', "skipped {{instance}} {{stream}}"),
], "pps", desc="Packets missing on arrival at each edge, recovered from the cloud's cache in time, and given up on (a gap in what viewers see).")
panel("Drops by reason", [(f'sum by (instance, stage, reason) (rate(mediapipe_stage_drops_total{{{I}}}[1m])) > 0', "{{instance}} {{stage}} {{reason}}")], "short", x=12,
      desc="Every drop has a reason (docs/metrics.md, README 'What is counted').")
row()
panel("Publisher → edge latency", [
    (f'mediapipe_stream_latency_seconds{{{IS}}}', "{{instance}} {{stream}}"),
    (f'mediapipe_stage_repair_rtt_seconds{{{I}}}', "repair RTT {{instance}}"),
    (f'mediapipe_stage_gap_wait_seconds{{{I}}}', "gap wait {{instance}}"),
], "s", desc="How long after the cloud sent a tag each edge had it ready for viewers, repair waits included (by the cloud's RTCP sender reports: the clocks must agree, as NTP keeps them); the round trip to the repair server; how long a gap waits before it is skipped.")
panel("Repair traffic", [
    (f'sum by (instance) (rate(mediapipe_stage_nacks_sent_total{{{I}}}[1m]))', "NACKed {{instance}}"),
    (f'sum by (instance) (rate(mediapipe_stage_repair_sent_packets_total{{{I}}}[1m]))', "repairs sent {{instance}}"),
], "pps", x=12)
row()
panel("Plugin restarts", [(f'sum by (instance, pipeline, stage) (increase(mediapipe_plugin_restarts_total{{{I}}}[5m]))', "{{instance}} {{pipeline}} {{stage}}")], "short", w=8)
panel("CPU", [(f'rate(process_cpu_seconds_total{{{I}}}[1m])', "{{instance}}")], "percentunit", w=8, x=8)
panel("Memory (RSS)", [(f'process_resident_memory_bytes{{{I}}}', "{{instance}}")], "bytes", w=8, x=16)
dash = {
  "title": "mediapipe",
  "uid": "mediapipe",
  "tags": ["mediapipe"],
  "timezone": "browser",
  "schemaVersion": 39,
  "version": 1,
  "refresh": "10s",
  "time": {"from": "now-30m", "to": "now"},
  "templating": {"list": [
    {"name": "instance", "label": "instance", "type": "query", "datasource": DS,
     "query": {"query": "label_values(mediapipe_config_last_reload_successful, instance)", "refId": "instance"},
     "definition": "label_values(mediapipe_config_last_reload_successful, instance)",
     "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "current": {"text": "All", "value": "$__all"}},
    {"name": "stream", "label": "stream", "type": "query", "datasource": DS,
     "query": {"query": 'label_values(mediapipe_stream_start_time_seconds{instance=~"$instance"}, stream)', "refId": "stream"},
     "definition": 'label_values(mediapipe_stream_start_time_seconds{instance=~"$instance"}, stream)',
     "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "current": {"text": "All", "value": "$__all"}},
  ]},
  "annotations": {"list": []},
  "panels": panels,
}
json.dump(dash, open("deploy/grafana/mediapipe.json", "w"), indent=2)
print(len(panels))
