"""Sessions take turns owning the engine; the owner serves the others over a Unix socket.

Where each guarantee lives (imports point down this list; platform code, locks among it, is in
`clarity.platform`, per-stage timings of recent calls in `clarity.timings`):
- `lease`: the lease lock, the records reader-writer lock, lease.json, the epoch, fencing.
- `tickets`: waiter tickets for handoff. `maintenance`: blocks that exclude every owner.
- `wire`: frames and the request/reply codec, the protocol version (`PROTOCOL`) and the words of a
  version mismatch. `owner_server`: the owner's endpoint (refuses another protocol). `peer_client`:
  the forwarding client (checks the owner's protocol in lease.json before sending).
- `waiter`: this process's own waiter ticket. `heartbeat`: keep the lease alive, say when a handoff is
  due. `service_host`: this process's memory service and model (built once; the standby's model is
  handed over here; model warm-up). `batcher`: stores queued at the owner run as one batch.
- `ownership`: take the lease, serve over the socket, run as owner (deadline and lease checks), step
  down. `standby`: the hot standby (model loaded, kernel wait on the lease).
- `policies`: one attempt per mode (forward, handoff, naive, direct).
- `coordinator`: `call()`: deadline, retry, error shaping. `status`: status (with every version
  involved) and doctor, no Coordinator.
Deadlines are `time.monotonic()` instants within a process; across the socket travels the time left.
"""
