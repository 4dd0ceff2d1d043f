"""The console in a real browser (Debian's Chromium driven by Playwright) against a real `conveyor up`: sign-in, a
job followed live to its end, a running job cancelled from its page, failure groups and a group's retry, the jobs list
updating itself, tenant isolation, CSRF, and axe-core on every page. Screenshots land in var/screenshots/."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.harness import ROOT, free_port

pytestmark = pytest.mark.e2e
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"
# As the machine's notes advise: without the background-networking flags Chromium tries Google's hosts at start.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

if not Path(CHROMIUM).exists():
    if os.environ.get("CONVEYOR_REQUIRE_SERVICES") == "1":
        raise RuntimeError("Chromium is missing: `make test` installs it (apt-get install -y chromium)")
    pytest.skip("no Chromium on this machine (make test installs it)", allow_module_level=True)

playwright_api = pytest.importorskip("playwright.sync_api")
axe_api = pytest.importorskip("axe_playwright_python.sync_playwright")


@dataclass
class Console:
    base: str
    key: str  # admin of tenant `default`
    other_key: str  # admin of tenant `globex`
    data_dir: Path

    def api(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        response = requests.request(method, f"{self.base}{path}", headers=headers, timeout=10, **kwargs)
        assert response.status_code < 400, (path, response.status_code, response.text)
        return response.json()

    def submit(self, job_type: str, payload: dict[str, Any], *, key: str | None = None, **fields: Any) -> str:
        job_id: str = self.api("POST", "/v1/jobs", key=key, json={"type": job_type, "payload": payload, **fields})["id"]
        return job_id

    def wait(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.api("GET", f"/v1/jobs/{job_id}")
            if job["status"] in statuses:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} still {job['status']}")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """`conveyor up` on the embedded default, as a newcomer runs it, with a second tenant's key made by the CLI."""
    directory = tmp_path_factory.mktemp("console")
    api_port, flower_port = free_port(), free_port()
    env = {**os.environ, "CONVEYOR_DATA_DIR": str(directory / "var"), "CONVEYOR_API_PORT": str(api_port),
           "CONVEYOR_FLOWER_PORT": str(flower_port), "HOME": str(directory)}  # fmt: skip
    env.pop("CONVEYOR_DATABASE_URL", None)
    env.pop("CONVEYOR_BROKER_URL", None)
    log_path = directory / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([CONVEYOR, "up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or up.poll() is not None:
                pytest.fail(log_path.read_text()[-3000:])
            time.sleep(0.3)
        key = (directory / "var" / "admin.key").read_text().strip()
        made = subprocess.run([CONVEYOR, "keys", "create", "--tenant", "globex", "--scope", "admin", "--quiet"],
                              env=env, cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
        yield Console(base, key, made.stdout.strip(), directory / "var")
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    """A new browser context (its own cookies) at desktop width, signed in as tenant `default`'s admin."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=console.base)
    page = context.new_page()
    sign_in(page, console.key)
    yield page
    context.close()


def chromium_version() -> str:
    out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=True).stdout
    return re.findall(r"[\d.]+", out)[0]


def sign_in(page: Any, key: str, then: str = "/console") -> None:
    page.goto(f"/console/sign-in?next={then}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(then) + r"$"))


def checked(page: Any, name: str) -> None:
    """axe-core finds no serious or critical violation on the page; its screenshot is kept."""
    results = axe_api.Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in serious]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def until(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_sign_in_refuses_a_bad_key_and_keeps_the_session_in_a_safe_cookie(browser: Any, console: Console) -> None:
    assert browser.version.split(".")[0] == chromium_version().split(".")[0]  # Debian's, not a downloaded one
    context = browser.new_context(base_url=console.base)
    page = context.new_page()
    page.goto("/console/jobs")
    assert page.url.endswith("/console/sign-in?next=/console/jobs")  # not signed in: asked to, then sent back
    checked(page, "sign-in")
    page.get_by_label("API key").fill("cvk_" + "0" * 16 + "_" + "a" * 43)  # well-formed, unknown
    page.get_by_role("button", name="Sign in").click()
    assert "not known here" in page.get_by_role("alert").inner_text()
    page.get_by_label("API key").fill(console.key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/jobs$"))
    [cookie] = context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["secure"], cookie["sameSite"], cookie["path"]) == (
        "conveyor_console",
        True,
        True,
        "Lax",
        "/console",
    )
    assert console.key.split("_")[2] not in cookie["value"]  # the key's id only, never its secret
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/console/sign-in$"))
    assert page.goto("/console/jobs").url.endswith("/console/sign-in?next=/console/jobs")
    context.close()


def test_a_job_is_followed_live_to_its_end(page: Any, console: Console) -> None:
    """Submitted with curl, watched on its page: the progress bar moves and the status reaches succeeded without a
    reload (a marker set on the page survives)."""
    made = subprocess.run(["curl", "-s", "--fail-with-body", "-X", "POST", f"{console.base}/v1/jobs",
                           "-H", f"Authorization: Bearer {console.key}", "-H", "Content-Type: application/json",
                           "-d", '{"type": "sleep", "payload": {"seconds": 4}}'],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    job_id = json.loads(made.stdout)["id"]
    page.goto(f"/console/jobs/{job_id}")
    page.evaluate("window.__notReloaded = true")
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while "succeeded" not in page.locator("#job-live h2").inner_text():
        bar = page.locator("#job-progress")
        if bar.count():
            value = int(bar.get_attribute("value") or 0)
            if not seen or value != seen[-1]:
                seen.append(value)
        assert time.monotonic() < deadline, "the page never showed succeeded"
        time.sleep(0.1)
    assert page.evaluate("window.__notReloaded") is True
    assert len(seen) >= 3 and seen == sorted(seen), seen  # it moved, forwards
    assert page.locator("#job-progress").get_attribute("value") == "4000"
    assert '"slept"' in page.locator("#job-live").inner_text()  # the result arrived with the last update
    assert console.api("GET", f"/v1/jobs/{job_id}")["status"] == "succeeded"
    checked(page, "job")


def test_a_running_job_is_cancelled_from_its_page(page: Any, console: Console) -> None:
    job_id = console.submit("sleep", {"seconds": 60})
    page.goto(f"/console/jobs/{job_id}")
    page.locator("#job-live h2", has_text="running").wait_for(timeout=30_000)
    page.get_by_role("button", name="Cancel job").click()
    page.locator("#job-live h2", has_text="cancelled").wait_for(timeout=30_000)
    assert console.api("GET", f"/v1/jobs/{job_id}")["status"] == "cancelled"
    kinds = [e["kind"] for e in console.api("GET", f"/v1/jobs/{job_id}/events")["items"]]
    assert kinds[-2:] == ["cancel_requested", "cancelled"]


def test_failures_are_grouped_and_a_group_is_retried(page: Any, console: Console) -> None:
    """30 failing jobs of two causes make two groups with their counts; retrying one group runs its jobs again (each
    fails its first attempt only) while the other group's stay failed."""
    orders = [console.submit("fail", {"times": 1, "message": f"order {n} timed out"}, max_attempts=1)
              for n in range(20)]  # fmt: skip
    cards = [console.submit("fail", {"times": 1, "message": f"card {n} refused"}, max_attempts=1) for n in range(10)]
    for job_id in orders + cards:
        console.wait(job_id, {"failed"})
    page.goto("/console/failures")
    checked(page, "failures")
    rows = {row.locator("td").first.inner_text().split("\n")[0]: row.locator("td").nth(1).inner_text()
            for row in page.locator("table.groups tbody tr").all()}  # fmt: skip
    assert rows == {"fail · DeliberateFailure: card <n> refused": "10",
                    "fail · DeliberateFailure: order <n> timed out": "20"}  # fmt: skip
    page.get_by_role("link", name="card <n> refused").click()
    checked(page, "failure-group")
    page.get_by_role("button", name="Retry all 10 failed").click()
    assert "Queued 10 failed jobs again." in page.get_by_role("status").inner_text()
    for job_id in cards:
        assert console.wait(job_id, {"succeeded", "failed"})["status"] == "succeeded"
    assert {console.api("GET", f"/v1/jobs/{j}")["status"] for j in orders} == {"failed"}
    page.goto("/console/failures")
    assert page.locator("table.groups tbody tr").count() == 1


def test_the_jobs_list_updates_itself_and_pages(page: Any, console: Console) -> None:
    console.wait(console.submit("fail", {"times": 1}, max_attempts=1), {"failed"})  # for the status filter below
    page.goto("/console/jobs")
    page.evaluate("window.__notReloaded = true")
    job_id = console.submit("echo", {"message": "hello console"})
    row = page.locator("#job-rows tr", has=page.locator(f'a[href="/console/jobs/{job_id}"]'))
    row.wait_for(timeout=30_000)
    row.locator(".status-succeeded").wait_for(timeout=30_000)
    assert page.evaluate("window.__notReloaded") is True
    checked(page, "jobs")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=failed"))
    statuses = {s.inner_text().split()[-1] for s in page.locator("#job-rows .status").all()}
    assert statuses == {"failed"}
    page.goto("/console")
    checked(page, "overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto("/console/jobs")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # nothing off the side
    checked(page, "jobs-phone")


def test_another_tenants_jobs_never_show(page: Any, console: Console) -> None:
    theirs = console.submit("echo", {"message": "globex only"}, key=console.other_key)
    page.goto("/console/jobs")
    assert theirs not in page.content()
    response = page.goto(f"/console/jobs/{theirs}")
    assert response.status == 404 and "No job with id" in page.inner_text("main")
    assert page.goto(f"/console/jobs/{theirs}/live").status == 404


def test_a_form_posted_without_its_csrf_token_is_refused(page: Any, console: Console) -> None:
    job_id = console.submit("sleep", {"seconds": 30}, delay_seconds=600)
    refused = page.request.post(f"/console/jobs/{job_id}/cancel", form={})
    forged = page.request.post(f"/console/jobs/{job_id}/cancel", form={"csrf_token": "forged"})
    assert refused.status == forged.status == 403
    assert console.api("GET", f"/v1/jobs/{job_id}")["status"] == "scheduled"  # nothing changed
    page.goto(f"/console/jobs/{job_id}")
    page.get_by_role("button", name="Cancel job").click()  # the page's own form carries it
    assert console.wait(job_id, {"cancelled"}, timeout=10)["status"] == "cancelled"


def beat_pid(console: Console) -> int:
    """The beat process that `conveyor up` started (for this data directory)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if b"beat" in args and any(str(console.data_dir).encode() in arg for arg in args):
            found.append(int(cmdline.parent.name))
    [pid] = found
    return pid


def test_a_schedules_fire_ledger_shows_the_slots_missed_while_beat_was_stopped(page: Any, console: Console) -> None:
    made = console.api("POST", "/v1/schedules", json={"name": "every-2s", "type": "echo", "interval_seconds": 2,
                                                      "payload": {"message": "tick"}})  # fmt: skip
    deadline = time.monotonic() + 30
    while console.api("GET", f"/v1/schedules/{made['id']}")["last_slot_at"] is None:
        assert time.monotonic() < deadline, "beat never fired the schedule"
        time.sleep(0.3)
    beat = beat_pid(console)
    os.kill(beat, signal.SIGSTOP)  # beat stops ticking; its slots pass unfired
    try:
        time.sleep(7)
    finally:
        os.kill(beat, signal.SIGCONT)
    until(lambda: console.api("GET", f"/v1/schedules/{made['id']}")["missed_slots"] >= 2, what="missed slots")
    page.goto("/console/schedules")
    page.get_by_role("link", name="every-2s").click()
    ledger = page.locator("table.ledger tbody")
    assert ledger.locator("tr.slot-missed").count() >= 2
    assert ledger.locator("tr.slot-fired").count() >= 2  # before the stop, and the latest slot after it
    checked(page, "schedule")


def test_a_dataset_shows_its_rejects(page: Any, console: Console) -> None:
    schema = '{"carrier": "string", "delay": "integer"}'
    headers = {"Authorization": f"Bearer {console.key}", "Content-Type": "text/csv"}
    response = requests.post(f"{console.base}/v1/datasets", params={"name": "flights", "schema": schema},
                             data="carrier,delay\nAA,5\nUA,late\nAA,1\n", headers=headers, timeout=10)  # fmt: skip
    assert response.status_code == 202, response.text
    console.wait(response.json()["job"]["id"], {"succeeded"})
    page.goto("/console/datasets")
    page.get_by_role("link", name="flights").click()
    [reject] = page.locator("table.rejects tbody tr").all()
    assert reject.inner_text().split("\t") == ["3", "delay", "late", "not an integer"]
    checked(page, "dataset")
    page.goto("/console/queues")
    checked(page, "queues")


def test_a_joined_datasets_lineage_graph_leads_to_its_inputs(page: Any, console: Console) -> None:
    headers = {"Authorization": f"Bearer {console.key}", "Content-Type": "text/csv"}
    made = {}
    for name, body in (("trips", "city,km\nOslo,5\nBergen,7\nOslo,2\n"), ("cities", "city,country\nOslo,NO\n")):
        response = requests.post(f"{console.base}/v1/datasets", params={"name": name}, data=body, headers=headers,
                                 timeout=10)  # fmt: skip
        assert response.status_code == 202, response.text
        console.wait(response.json()["job"]["id"], {"succeeded"})
        made[name] = response.json()["dataset"]["id"]
    join = {"left": {"dataset_id": made["trips"]}, "right": {"dataset_id": made["cities"]}, "on": ["city"],
            "how": "left", "name": "trips by country"}  # fmt: skip
    job = console.submit("dataset_join", join)
    console.wait(job, {"succeeded"})
    result = console.api("GET", f"/v1/jobs/{job}/result")["data"]
    page.goto(f"/console/datasets/{result['dataset_id']}")
    graph = page.locator("svg.lineage-graph")
    assert graph.locator("g.node").count() == 3 and graph.locator("path.edge").count() == 2
    assert graph.locator("g.node.current text").first.text_content() == "trips by country"
    checked(page, "dataset-lineage")
    graph.locator("a", has_text="cities").click()
    page.wait_for_url(f"**/console/datasets/{made['cities']}")
    assert page.locator("h1").inner_text() == "Dataset cities"


def test_a_workflow_is_followed_live_to_its_end(page: Any, console: Console) -> None:
    flow = console.api("POST", "/v1/workflows", json={"name": "two-steps", "steps": [
        {"name": "first", "type": "sleep", "payload": {"seconds": 1.5}},
        {"name": "second", "type": "sleep", "payload": {"seconds": 1.5}, "depends_on": ["first"]}]})  # fmt: skip
    page.goto(f"/console/workflows/{flow['id']}")
    page.evaluate("window.__notReloaded = true")
    page.locator("#workflow-live h2", has_text="succeeded").wait_for(timeout=60_000)
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("table.steps .status-succeeded").count() == 2
    checked(page, "workflow")
    page.get_by_role("link", name="first").click()
    assert "two-steps" not in page.url and "/console/jobs/" in page.url
    page.goto("/console/workflows")
    checked(page, "workflows")


def test_a_job_is_cancelled_with_the_keyboard_alone(page: Any, console: Console) -> None:
    """From the top of a job's page, Tab reaches its Cancel button (after the skip link and the navigation) and
    Enter presses it."""
    job_id = console.submit("sleep", {"seconds": 30}, delay_seconds=600)
    page.goto(f"/console/jobs/{job_id}")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Cancel job":
            break
    else:
        raise AssertionError("Tab never reached the Cancel button")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # focus is visible
    page.keyboard.press("Enter")
    assert console.wait(job_id, {"cancelled"}, timeout=10)["status"] == "cancelled"


def test_the_api_docs_render_with_nothing_from_the_internet(page: Any) -> None:
    """/docs is Swagger UI from the API's own files (this machine's Chromium has no internet to fall back on)."""
    page.goto("/docs")
    page.locator(".swagger-ui .info .title", has_text="Conveyor").wait_for(timeout=30_000)
    assert page.locator(".opblock-tag-section").count() >= 10  # the operations, by tag
    page.goto("/console/schedules")
    checked(page, "schedules")
    page.goto("/console/datasets")
    checked(page, "datasets")
