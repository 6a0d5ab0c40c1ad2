"""CSV imports: streamed in chunks from the UI, the API and the command line, with an error report."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.tenancy.context import tenant_context
from apps.tenancy.roles import Role
from apps.usage import imports
from apps.usage.imports import import_job_create, import_job_run, import_job_step
from apps.usage.models import ImportJob, ImportStatus, UsageEvent
from tests.conftest import member

pytestmark = pytest.mark.django_db

HEADER = "event_id,account_id,meter,quantity,occurred_at,properties\n"
GOOD = [
    'e1,acme,api_calls,10,2026-10-01T00:00:00Z,"{""region"": ""eu""}"\n',
    "e2,globex,storage_gb,0.5,2026-10-02T10:00:00+02:00,\n",
    'e3,acme,api_calls,3,2026-10-03T00:00:00Z,"{""note"": ""a, quoted"",\n""lines"": 2}"\n',
]
BAD = [
    "e4,nobody,api_calls,1,2026-10-01T00:00:00Z,\n",  # line 7: unknown account
    "e5,acme,api_calls,lots,2026-10-01T00:00:00Z,\n",  # line 8: not a number
    "e6,acme,api_calls,1,2026-10-01 00:00,\n",  # line 9: no offset
    "e1,acme,api_calls,11,2026-10-01T00:00:00Z,\n",  # line 10: e1 again, different: a conflict
    ",acme,api_calls,1,2026-10-01T00:00:00Z,\n",  # line 11: no event id
]
EXPECTED_ERRORS = [
    ("7", "account_id", "unknown_account"),
    ("8", "quantity", "invalid"),
    ("9", "occurred_at", "invalid"),
    ("10", "event_id", "conflict"),
    ("11", "event_id", "required"),
]
CONTENT = HEADER + "".join(GOOD) + "\n" + "".join(BAD) + 'e7,initech,api_calls,1,2026-10-01T00:00:00Z,"{}"\n'


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(CONTENT)
    return path


@pytest.fixture(autouse=True)
def _imports_here(settings, tmp_path):
    settings.USAGE_IMPORTS_DIR = tmp_path / "imports"


def stored(tenant):
    with tenant_context(tenant):
        return {e.event_id: e for e in UsageEvent.objects.all()}


def test_the_command_imports_prints_a_summary_and_writes_the_error_report(cat_a, csv_file, capsys):
    call_command("import_events", str(csv_file), "--tenant", cat_a.tenant.slug)
    out = capsys.readouterr().out
    assert "100%" in out and "rows/s" in out, "a progress line"
    assert "Done: 9 rows" in out and "accepted 4" in out and "conflicts 1" in out and "rejected 4" in out
    report = csv_file.with_name("events.csv.errors.csv")
    assert f"Error report (5 lines): {report}" in out
    rows = list(csv.reader(io.StringIO(report.read_text())))
    assert rows[0] == ["line", "field", "code", "reason"]
    assert [tuple(row[:3]) for row in rows[1:]] == EXPECTED_ERRORS
    assert all(row[3] for row in rows[1:])
    events = stored(cat_a.tenant)
    assert set(events) == {"e1", "e2", "e3", "e7"}
    assert events["e1"].quantity == Decimal("10") and events["e1"].properties == {"region": "eu"}
    assert events["e3"].properties == {"note": "a, quoted", "lines": 2}, "a quoted field over two lines"
    assert {e.source for e in events.values()} == {"csv"}
    # again: everything is a duplicate or still bad, nothing is stored twice
    call_command("import_events", str(csv_file), "--tenant", cat_a.tenant.slug, "--quiet")
    assert "accepted 0, duplicates 4" in capsys.readouterr().out
    assert len(stored(cat_a.tenant)) == 4


def test_the_command_refuses_a_file_without_the_columns(cat_a, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("id,customer,amount\n1,acme,3\n")
    with pytest.raises(CommandError, match=r"lacks the column\(s\) event_id, account_id, meter"):
        call_command("import_events", str(path), "--tenant", cat_a.tenant.slug, "--quiet")
    rows = list(csv.reader(io.StringIO(path.with_name("wrong.csv.errors.csv").read_text())))
    assert rows[1][:2] == ["1", "header"]
    with pytest.raises(CommandError, match="No tenant"):
        call_command("import_events", str(path), "--tenant", "nope")


def test_a_file_is_read_a_chunk_at_a_time_and_resumes_where_it_stopped(cat_a, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "BATCH_ROWS", 2)
    monkeypatch.setattr(imports, "CHUNK_BATCHES", 1)
    path = tmp_path / "chunks.csv"
    lines = [f"c{n},acme,api_calls,{n},2026-10-01T00:00:00Z\n" for n in range(7)]
    path.write_bytes(("\ufeffevent_id,account_id,meter,quantity,occurred_at\n" + "".join(lines)).encode())
    path.write_bytes(path.read_bytes().replace(b"c5,", b"c5\xff,"))  # one line that is not UTF-8
    with tenant_context(cat_a.tenant):
        job = import_job_create(
            tenant=cat_a.tenant,
            actor=None,
            source="command",
            filename="chunks.csv",
            path=path,
            total_bytes=path.stat().st_size,
        )
    progress = []
    for _ in range(10):
        with tenant_context(cat_a.tenant):
            job = ImportJob.objects.get(pk=job.pk)
            more = import_job_step(job=job)
        progress.append((job.rows_read, job.bytes_read))
        if not more:
            break
    assert progress[:4] == sorted(progress[:4]) and len(progress) == 4, "2 rows per chunk, then the end"
    assert job.status == ImportStatus.DONE and job.bytes_read == job.total_bytes
    assert (job.accepted, job.rejected) == (6, 1)
    with tenant_context(cat_a.tenant):
        error = job.row_errors.get()
    assert (error.line, error.reason) == (7, "The line is not UTF-8 text.")
    assert set(stored(cat_a.tenant)) == {f"c{n}" for n in range(7)} - {"c5"}


def test_uploading_from_the_ui_shows_a_live_progress_bar_then_the_error_report(
    client, cat_a, settings, django_capture_on_commit_callbacks
):
    settings.USAGE_IMPORTS_INLINE = True  # the test's data is not committed: no background thread here
    user = member(cat_a.tenant, Role.REVOPS)
    client.force_login(user)
    url = reverse("usage-import-list", kwargs={"tenant_slug": cat_a.tenant.slug})
    assert b'type="file"' in client.get(url).content
    upload = SimpleUploadedFile("october.csv", CONTENT.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url, {"file": upload})
    assert response.status_code == 302
    with tenant_context(cat_a.tenant):
        job = ImportJob.objects.get()
    detail = reverse("usage-import-detail", kwargs={"tenant_slug": cat_a.tenant.slug, "import_id": job.pk})
    assert response["Location"] == detail
    # before the import runs: the card polls itself every second
    page = client.get(detail).content.decode()
    assert 'hx-trigger="every 1s"' in page and "<progress" in page and 'value="0"' in page
    for callback in callbacks:
        callback()
    partial = client.get(detail, HTTP_HX_REQUEST="true")
    html = partial.content.decode()
    assert html.lstrip().startswith('<section class="card" id="import-job"'), "htmx gets the card only"
    assert "every 1s" not in html, "a finished import stops polling"
    assert 'value="100"' in html and "Download the error report" in html
    assert "No account with id &#x27;nobody&#x27;." in html
    report = client.get(
        reverse("usage-import-errors", kwargs={"tenant_slug": cat_a.tenant.slug, "import_id": job.pk})
    )
    assert report["Content-Disposition"].startswith('attachment; filename="october-errors.csv"')
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert [tuple(row[:3]) for row in rows[1:]] == EXPECTED_ERRORS
    with tenant_context(cat_a.tenant):
        actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"usage.import.create", "usage.import.finish"} <= actions
    assert len(stored(cat_a.tenant)) == 4


def test_an_upload_without_a_file_is_refused_in_place(client, cat_a):
    client.force_login(member(cat_a.tenant, Role.ADMIN))
    response = client.post(reverse("usage-import-list", kwargs={"tenant_slug": cat_a.tenant.slug}), {})
    assert response.status_code == 422 and b"This field is required" in response.content


def test_a_viewer_sees_imports_but_cannot_upload(client, cat_a):
    client.force_login(member(cat_a.tenant, Role.VIEWER))
    url = reverse("usage-import-list", kwargs={"tenant_slug": cat_a.tenant.slug})
    page = client.get(url)
    assert page.status_code == 200 and b'type="file"' not in page.content
    upload = SimpleUploadedFile("x.csv", CONTENT.encode(), content_type="text/csv")
    assert client.post(url, {"file": upload}).status_code == 403


def test_the_api_takes_a_csv_body_and_reports_progress_and_errors(
    client, cat_a, settings, django_capture_on_commit_callbacks
):
    settings.USAGE_IMPORTS_INLINE = True
    auth = {"HTTP_AUTHORIZATION": f"Bearer {cat_a.raw_key}"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/events/imports?filename=oct.csv", data=CONTENT, content_type="text/csv", **auth
        )
    assert response.status_code == 202
    job = response.json()
    assert job["filename"] == "oct.csv"
    detail = client.get(f"/api/v1/events/imports/{job['id']}", **auth).json()
    assert detail["status"] == "done" and detail["percent"] == 100
    assert (detail["accepted"], detail["conflicts"], detail["rejected"]) == (4, 1, 4)
    report = client.get(detail["errors_url"], **auth)
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert [tuple(row[:3]) for row in rows[1:]] == EXPECTED_ERRORS
    listed = client.get("/api/v1/events/imports", **auth).json()["results"]
    assert [j["id"] for j in listed] == [job["id"]]
    wrong = client.post("/api/v1/events/imports", data="{}", content_type="application/json", **auth)
    assert wrong.status_code == 415


def test_another_tenants_import_is_not_found(client, cat_a, cat_b, tenant_b):
    from tests.factories import ImportJobFactory

    theirs = ImportJobFactory(tenant=tenant_b)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {cat_a.raw_key}"}
    assert client.get(f"/api/v1/events/imports/{theirs.pk}", **auth).status_code == 404
    assert client.get(f"/api/v1/events/imports/{theirs.pk}/errors", **auth).status_code == 404
    client.force_login(member(cat_a.tenant, Role.ADMIN))
    for name in ("usage-import-detail", "usage-import-errors"):
        url = reverse(name, kwargs={"tenant_slug": cat_a.tenant.slug, "import_id": theirs.pk})
        assert client.get(url).status_code == 404


def test_without_a_broker_the_import_runs_in_a_background_thread(
    cat_a, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    """The embedded start: the upload returns at once and a thread imports the chunks."""
    started = []
    monkeypatch.setattr(imports, "_run_in_thread", lambda *args: started.append(args))
    monkeypatch.setattr(imports.threading.Thread, "start", lambda self: self.run())
    path = tmp_path / "bg.csv"
    path.write_text(CONTENT)
    with tenant_context(cat_a.tenant):
        job = import_job_create(
            tenant=cat_a.tenant, actor=None, source="ui", filename="bg.csv", path=path, total_bytes=1
        )
    with django_capture_on_commit_callbacks(execute=True):
        imports.import_job_start(job)
    assert started == [(cat_a.tenant.pk, job.pk)]


def test_a_run_stops_at_a_failure_and_says_why(cat_a, tmp_path):
    path = tmp_path / "gone.csv"
    with tenant_context(cat_a.tenant):
        job = import_job_create(
            tenant=cat_a.tenant, actor=None, source="ui", filename="gone.csv", path=path, total_bytes=1
        )
    job = import_job_run(cat_a.tenant.pk, job.pk)
    assert job.status == ImportStatus.FAILED and "FileNotFoundError" in job.error
