"""Sessions take turns owning the engine; the owner serves the others over a Unix socket.

Where each guarantee lives (imports point down this list; platform code, locks among it, is in
`clarity.platform`, per-stage timings of recent calls in `clarity.timings`):
- `lease`: the lease lock, the records reader-writer lock, lease.json, the epoch, fencing.
- `tickets`: waiter tickets for handoff. `maintenance`: blocks that exclude every owner.
- `wire`: frames and the request/reply codec. `owner_server`: the owner's endpoint.
  `peer_client`: the forwarding client.
- `waiter`: this process's own waiter ticket. `heartbeat`: keep the lease alive, say when a handoff is
  due. `service_host`: this process's memory service and model (built once; the standby's model is
  handed over here; model warm-up). `batcher`: stores queued at the owner run as one batch.
- `ownership`: take the lease, serve over the socket, run as owner (deadline and lease checks), step
  down. `standby`: the hot standby (model loaded, kernel wait on the lease).
- `policies`: one attempt per mode (forward, handoff, naive, direct).
- `coordinator`: `call()`: deadline, retry, error shaping. `status`: status and doctor, no Coordinator.
"""
