from kumadp.agent.readiness import Readiness, State


def test_blockers_hold_readiness_with_their_reasons() -> None:
    readiness = Readiness()
    readiness.set_ready(True)
    assert readiness.state is State.READY and readiness.reasons == []
    readiness.block("certificate", "expired at 2026-01-01T00:00:00Z")
    readiness.block("dns", "no name table yet")
    assert readiness.state is State.NOT_READY
    assert readiness.reasons == [
        "certificate: expired at 2026-01-01T00:00:00Z",
        "dns: no name table yet",
    ]
    readiness.unblock("dns")
    readiness.unblock("certificate")
    assert readiness.state is State.READY
    readiness.set_terminating()
    readiness.set_ready(True)
    assert readiness.state is State.TERMINATING
