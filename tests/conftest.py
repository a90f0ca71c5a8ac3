import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `make test` runs the files on one pytest-xdist worker per core, a whole file per worker so that a
# module's trained fixture is built once. Workers take files in collection order (xdist's own order is by
# number of tests), so the files that train several models go first: the run cannot end before its
# heaviest file does, which matters most with many workers.
HEAVIEST_FIRST = ("test_traffic_signs.py", "test_image_generation.py", "test_colorize.py",
                  "test_image_classification.py", "test_translation.py", "test_serving_ui.py",
                  "test_spoken_translation.py", "test_distribute.py", "test_captioning.py", "test_text_generation.py",
                  "test_bench.py", "test_speech_commands.py", "test_cli.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = item.path.name
        return HEAVIEST_FIRST.index(name) if name in HEAVIEST_FIRST else len(HEAVIEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
