"""The fault campaign (make chaos): thousands of jobs of mixed kinds through random faults,
judged afterwards by evidence, not by the queue's own account of itself.

    workload.py   the campaign's job kinds (they write the ledger) and the seeded job plan
    faults.py     what goes wrong: killed and frozen instances, database and pooler restarts,
                  dropped LISTEN connections, duplicate and late deliveries, a locked table
    observe.py    what the campaign sees from outside: every HTTP answer, connections, streams
    checks.py     the verdict: each check reads the job rows, the ledger and the observations
    clients.py    the calls: enqueue and cancel as a client, Cloud Tasks' extra deliveries,
                  Cloud Scheduler's ticks
    run.py        one run: start the stack, drive the plan through the faults, drain, stop
    verdict.py    every check over one run, and its report (build/chaos.json)
    planted.py    the campaign from a copy of the tree with a bug planted: it must fail
    __main__.py   python -m bench.campaign [--seed N] [--jobs N] [--plant unfenced-complete]
"""
