"""Sessions take turns owning the engine; the owner serves the others over a Unix socket.

Where each guarantee lives (imports point down this list):
- `fs`: all platform code (Linux only): OFD locks and their probe, private-folder checks, no-follow
  atomic files, SO_PEERCRED, pid namespaces.
- `lease`: the lease lock, the records reader-writer lock, lease.json, the epoch, fencing.
- `tickets`: waiter tickets for handoff. `maintenance`: blocks that exclude every owner.
- `wire`: frames and the request/reply codec. `owner_server`: the owner's endpoint.
  `peer_client`: the forwarding client.
- `ownership`: become owner, run as owner, heartbeat, hand off, step down. `batcher`: stores queued
  at the owner run as one batch. `standby`: the hot standby (model loaded, kernel wait on the lease).
- `timings`: per-stage timings of recent calls (coordination_status()["timings"]).
- `policies`: one attempt per mode (forward, handoff, naive, direct).
- `coordinator`: `call()`: deadline, retry, error shaping. `status`: status and doctor, no Coordinator.
"""
