/* The live page of a controller (or of loads-runner --web): at "/" the list of runs, at
 * "/runs/ID" one run drawn by report.js and redrawn with every server-sent event (about once a
 * second while it runs, the final report last), with a button that stops it.
 *
 * The page talks to its own server only (/api/...). Text from runs is set as text, never HTML.
 */
(function () {
  "use strict";

  const root = document.getElementById("loads-report");
  const status = document.getElementById("status");
  const stop = document.getElementById("stop");
  const download = document.getElementById("download");

  function say(text) { status.textContent = text; }

  function cell(text, href) {
    const td = document.createElement("td");
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    return td;
  }

  // ---- the list of runs ----

  function listRuns() {
    document.title = "Loads: runs";
    const heading = document.createElement("h1");
    heading.textContent = "Runs";
    const table = document.createElement("table");
    table.id = "runs";
    table.innerHTML = "<thead><tr><th>run</th><th>state</th><th>test</th><th>started</th>" +
                      "<th>hits</th><th>executions</th><th>users</th></tr></thead><tbody></tbody>";
    root.replaceChildren(heading, table);
    const body = table.tBodies[0];
    let shown = 0;
    async function refresh() {
      try {
        const reply = await fetch("/api/runs", { cache: "no-store" });
        if (!reply.ok) throw new Error((await reply.json()).error || reply.statusText);
        const runs = (await reply.json()).runs;
        body.replaceChildren(...runs.map((r) => {
          const tr = document.createElement("tr");
          tr.append(cell(r.id, "/runs/" + encodeURIComponent(r.id)), cell(r.state), cell(r.test),
                    cell(r.started), cell(r.hits.toLocaleString("en-US")),
                    cell(r.executions.toLocaleString("en-US")), cell(String(r.active_users)));
          return tr;
        }));
        say(runs.length + " run(s)");
        root.dataset.refreshes = String(++shown);
      } catch (e) {
        say("cannot list the runs: " + e.message);
      }
    }
    refresh();
    setInterval(refresh, 2000);
  }

  // ---- one run, live ----

  function watchRun(id) {
    document.title = "Loads: " + id;
    const base = "/api/runs/" + encodeURIComponent(id);
    let updates = 0;
    const events = new EventSource(base + "/events");
    say("connecting…");
    events.addEventListener("report", (event) => {
      const live = JSON.parse(event.data);
      if (live.report) LoadsReport.render(root, live.report, live.state);
      updates += 1;
      root.dataset.updates = String(updates);
      root.dataset.state = live.state;
      say("run " + id + ": " + live.state + (live.over ? "" : " (live)"));
      stop.hidden = live.over;
      if (live.over) {
        events.close();
        root.dataset.over = "true";
        download.href = "/runs/" + encodeURIComponent(id) + "/report.html";
        download.hidden = false;
      }
    });
    events.addEventListener("gone", () => {
      events.close();
      say("run " + id + " is no longer kept by the server");
    });
    events.onerror = () => {
      if (root.dataset.over !== "true") say("connection lost; reconnecting…");
    };
    stop.addEventListener("click", async () => {
      stop.disabled = true;
      try {
        const reply = await fetch(base + "/stop", {
          method: "POST",
          headers: { "X-Loads-Action": "stop" },
        });
        if (!reply.ok) throw new Error((await reply.json()).error || reply.statusText);
        say("run " + id + ": stopping…");
      } catch (e) {
        say("cannot stop the run: " + e.message);
        stop.disabled = false;
      }
    });
  }

  const path = location.pathname;
  if (path.startsWith("/runs/")) watchRun(decodeURIComponent(path.slice("/runs/".length)));
  else listRuns();
})();
