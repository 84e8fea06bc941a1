"""Screenshots of the viewer's pages for the docs: ``python docs/screenshots/take.py DB RUN
[TURN [QUERY]]``.

Serves DB read-only on a free loopback port, opens each page of run RUN in Debian's Chromium
(Playwright, ``executable_path=/usr/bin/chromium``) and writes runs.png, run.png, turn.png,
memory.png and search.png beside this file. Look at them before committing.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from personae.store.repo import Store
from personae.web.app import make_app
from personae.web.serve import Address, listen

HERE = Path(__file__).parent


def main(db: str, run_id: int, turn: int = 4, query: str = "cache") -> None:
    with Store.open_readonly(db) as store:
        sock, where = listen(Address("127.0.0.1", 0, None))
        server = uvicorn.Server(uvicorn.Config(make_app(store), log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{where.port}"
        pages = {
            "runs": "/", "run": f"/runs/{run_id}", "turn": f"/runs/{run_id}/turns/{turn}",
            "memory": f"/runs/{run_id}/memory", "search": f"/search?q={query}",
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            for name, path in pages.items():
                page.goto(base + path)
                if name == "memory":
                    page.wait_for_selector("#graph[data-drawn]")
                    page.evaluate(
                        "() => { const n = personaeGraph.nodes('[kind = \"fact\"], [kind = \"summary\"]')[0];"
                        " if (n) { n.select(); n.emit('tap'); } }"
                    )
                page.screenshot(path=str(HERE / f"{name}.png"))
            browser.close()
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *(int(a) for a in sys.argv[3:4]), *sys.argv[4:5])
