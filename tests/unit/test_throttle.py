"""Failed sign-ins are limited per (user, address) and per address, in a sliding window."""

from twisted.internet.task import Clock

from desktop_relay.auth.throttle import LoginThrottle


def test_pair_is_blocked_after_limit_and_released_after_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=3, window=60)
    for _ in range(3):
        assert throttle.retry_after("anna", "10.0.0.1") == 0
        throttle.failed("anna", "10.0.0.1")
        clock.advance(1)
    assert 0 < throttle.retry_after("anna", "10.0.0.1") <= 60
    # Another machine is not locked out of anna's account.
    assert throttle.retry_after("anna", "10.0.0.2") == 0
    clock.advance(60)
    assert throttle.retry_after("anna", "10.0.0.1") == 0


def test_one_address_trying_many_names_is_blocked() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=2, window=60)
    for n in range(8):
        throttle.failed(f"user{n}", "10.0.0.9")
    assert throttle.retry_after("someone-new", "10.0.0.9") > 0
    assert throttle.retry_after("someone-new", "10.0.0.8") == 0


def test_success_clears_the_pair() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, attempts=2, window=60)
    throttle.failed("anna", "10.0.0.1")
    throttle.failed("anna", "10.0.0.1")
    throttle.succeeded("anna", "10.0.0.1")
    assert throttle.retry_after("anna", "10.0.0.1") == 0
