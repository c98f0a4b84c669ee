"""Django's and Alembic's own migrate commands against a Strata branch through the gateway.
Usage: frameworks.py django|alembic PORT USER PASSWORD DATABASE
Prints the framework's output; exits non-zero when the framework fails."""

import io
import os
import sys

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frameworks")
kind, port, user, password, db = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

if kind == "django":
    sys.path.insert(0, here)
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        INSTALLED_APPS=["shop"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.mysql",
                "NAME": db,
                "USER": user,
                "PASSWORD": password,
                "HOST": "127.0.0.1",
                "PORT": port,
            }
        },
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    out = io.StringIO()
    call_command("migrate", "shop", interactive=False, stdout=out, verbosity=1)
    call_command("showmigrations", "shop", stdout=out)
    print(out.getvalue())
elif kind == "alembic":
    from alembic import command
    from alembic.config import Config

    os.environ["STRATA_TEST_DB_URL"] = "mysql+pymysql://%s:%s@127.0.0.1:%d/%s" % (user, password, port, db)
    cfg = Config()
    cfg.set_main_option("script_location", os.path.join(here, "alembic"))
    command.upgrade(cfg, "head")
    command.current(cfg, verbose=False)
else:
    sys.exit("unknown framework " + kind)
