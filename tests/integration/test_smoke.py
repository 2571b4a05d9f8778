def test_sleep_worker_round_trip(running_system):
    result = running_system.run_worker("workers.sleep", "--sleep-time", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "received message from manager: (ack) message acknowledged" in result.stdout
    assert running_system.checklist() == {"sleepyhead": {"sleep time": 0}}
