"""mturk stage: human verification HITs through the MTurk requester API (boto3), and a server.

- `mturk.publish.publish(app, ...)`: HITs for the votes consensus still needs (idempotent tokens).
- `mturk.collect.collect(app, ...)`: store answers and votes, review by policy, ask for more.
- `mturk.server.start_in_thread(app)` / `imnet mturk serve`: the self-hosted MTurk-compatible
  requester API (JSON 1.1 + SigV4) and worker site, state in the project's database.
- `mturk.simulate.run_workers(url, truth, ...)`: bots doing HITs through the worker site.
"""
