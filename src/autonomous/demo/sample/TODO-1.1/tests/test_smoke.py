import todo_api


def test_version():
    assert todo_api.__version__ == "0.1.0"
