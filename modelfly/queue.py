"""The job queue and its storage: huey on SQLite, a file under MODELFLY_DATA_DIR with nothing
to install or start, or on Redis (MODELFLY_QUEUE_URL), shared by any number of server replicas
and workers on any number of machines. Both keep the queue, the schedule and a key-value store
in which jobs.py keeps each job's state, rows and answers.

SQLite's commits are not flushed to disk one by one (fsync=False: WAL with synchronous off),
which halves a job's time: a crash of the server or of a worker loses nothing, a power cut can
lose the last writes. Jobs that must outlive the machine belong on Redis, with its AOF."""

from huey import Huey, RedisHuey, SqliteHuey

from modelfly.settings import JobSettings

NAME = "modelfly"


def make_huey(settings: JobSettings) -> Huey:
    """The queue the settings name; tasks are added by jobs.Jobs."""
    if settings.queue_url:
        return RedisHuey(NAME, url=settings.queue_url, results=False)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(NAME, filename=str(settings.data_dir / "jobs.sqlite3"), results=False,
                      fsync=False)
