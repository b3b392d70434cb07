"""Scheduled prompts and reminders (see the cron issue): jobs from the config, the CLI and the chat,
fired exactly once by APScheduler 3.x inside ``reverie start``.

    expr.py     crontab (0 and 7 are Sunday) and every/at to APScheduler triggers; slot arithmetic
    jobs.py     the jobs: config ``cron_jobs`` plus ``<workspace>/cron/jobs.yaml`` (CLI and chat)
    runs.py     ``cron/runs.jsonl`` (every run and its outcome) and ``cron/state.json`` (each job's last slot)
    service.py  the scheduler in the daemon: catch-up at start, firing, overlap, delivery, the session note
    local.py    the job's prompt, the note for the chat's session, ``reverie cron run`` without a daemon
    tool.py     the ``cron`` tool for the model
    cli.py      ``reverie cron add | list | remove | enable | disable | run | log``
"""
