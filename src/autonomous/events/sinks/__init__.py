"""Where events go: :mod:`.files` (log file and ``events.jsonl``), :mod:`.terminal` (what a
person watching ``autonomous start`` sees) and :mod:`.slack` (webhook notifications).

Each sink gets events the bus has already redacted; sinks import neither each other nor
the status code, so one can change without the others.
"""
