import pytest
import time_machine

from tests.reports.support import NOW, World, world_create


@pytest.fixture
def world(db: None) -> World:
    return world_create()


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller
