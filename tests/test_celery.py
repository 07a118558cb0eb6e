import pytest

from dialoog.tasks import ping


@pytest.mark.smoke
def test_a_task_round_trips_through_the_broker_to_a_real_worker(celery_worker):
    answer = ping.apply_async(queue=celery_worker["queue"]).get(timeout=30)

    assert answer["pong"] is True
    assert answer["worker"].startswith(celery_worker["name"] + "@")
    assert "pong from worker " + celery_worker["name"] in celery_worker["log"].read_text()
