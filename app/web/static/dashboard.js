// Tasker dashboard: plain JavaScript over the public API (/api/v1) and its event streams.
// No inline code (the Content-Security-Policy allows this file only), nothing from a CDN.
"use strict";

(function () {
  const TERMINAL = ["COMPLETED", "FAILED", "CANCELLED"];
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (selector) => document.querySelector(selector);

  // --- helpers -------------------------------------------------------------------------------

  async function api(method, path, body, extraHeaders) {
    const headers = { Accept: "application/json", ...(extraHeaders || {}) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (csrf) headers["X-CSRF-Token"] = csrf;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (error) {
      return { status: 0, data: { error: "Tasker cannot be reached: " + error.message, details: {} } };
    }
    if (response.status === 401 && document.body.dataset.page !== "login") {
      window.location.assign("/dashboard/login?next=" + encodeURIComponent(window.location.pathname));
    }
    const text = await response.text();
    let data = {};
    try {
      data = text ? JSON.parse(text) : {};
    } catch (error) {
      data = { error: text };
    }
    return { status: response.status, data };
  }

  function notice(message) {
    const box = $("#notice");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function when(value) {
    if (!value) return "–";
    const date = new Date(value);
    return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  }

  function badge(node, status) {
    node.textContent = status;
    node.className = "badge s-" + status.toLowerCase();
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  // Field errors from a 400: {"details": {"parameters": {"a": [..]}, "priority": [..]}}
  function showErrors(details, prefix) {
    document.querySelectorAll(".field-error").forEach((node) => {
      node.hidden = true;
      node.textContent = "";
    });
    document.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
    const unplaced = [];
    // A nested error ({"webhook": {"url": [..]}}) goes under the field "webhook-url", or the nearest
    // enclosing one the form has ("webhook").
    const place = (field, messages) => {
      if (messages && !Array.isArray(messages) && typeof messages === "object") {
        for (const [key, inner] of Object.entries(messages)) place(field + "-" + key, inner);
        return;
      }
      let id = prefix + field.replace(/\./g, "-"); // "webhook.url" too
      while (!document.getElementById(id) && id.lastIndexOf("-") > prefix.length) id = id.slice(0, id.lastIndexOf("-"));
      const target = document.getElementById(id);
      const text = [].concat(messages).map((m) => (typeof m === "string" ? m : json(m))).join(" ");
      if (target) {
        target.textContent = text;
        target.hidden = false;
        const input = target.parentElement.querySelector("input, select, textarea");
        if (input) {
          input.setAttribute("aria-invalid", "true");
          input.setAttribute("aria-describedby", target.id);
        }
      } else {
        unplaced.push(field + ": " + text);
      }
    };
    for (const [field, messages] of Object.entries(details || {})) {
      if (field === "parameters" && messages && !Array.isArray(messages) && typeof messages === "object") {
        for (const [name, inner] of Object.entries(messages)) place("p-" + name, inner);
      } else if (field !== "valid_task_names" && field !== "valid_tasks") {
        place(field, messages);
      }
    }
    return unplaced;
  }

  // Each cell names its column (data-label), for the stacked rows of a table on a phone.
  function labelCells(tbody) {
    const heads = [...tbody.closest("table").querySelectorAll("thead th")].map((th) => th.textContent);
    for (const row of tbody.rows) [...row.cells].forEach((cell, index) => (cell.dataset.label = heads[index] || ""));
  }

  function formError(id, message) {
    const node = document.getElementById(id);
    node.textContent = message || "";
    node.hidden = !message;
  }

  // --- the task list --------------------------------------------------------------------------

  function taskRow(task) {
    const progress = el("progress", { max: "100", value: String(task.progress ?? 0), "aria-label": "Progress" });
    const row = el(
      "tr",
      { "data-id": task.id },
      el(
        "td",
        { class: "mono" },
        el("input", { type: "checkbox", class: "pick", "aria-label": "Select " + task.id.slice(0, 8) }),
        el("a", { href: "/dashboard/tasks/" + task.id, text: task.id.slice(0, 8) })
      ),
      el("td", {}, task.name, ...tagChips(task.tags)),
      el("td", {}, el("span", { class: "badge" })),
      el("td", {}, progress, el("span", { class: "pct" })),
      el("td", { text: when(task.created_at) })
    );
    updateRow(row, task);
    return row;
  }

  function tagChips(tags) {
    return (tags || []).map((tag) => el("span", { class: "tag", text: tag }));
  }

  function words(text) {
    return (text || "").split(/[\s,]+/).filter(Boolean);
  }

  function updateRow(row, task) {
    row.dataset.status = task.status;
    badge(row.querySelector(".badge"), task.status);
    const value = task.progress ?? (task.status === "COMPLETED" ? 100 : 0);
    row.querySelector("progress").value = value;
    row.querySelector(".pct").textContent = task.progress === null || task.progress === undefined ? "" : value + " %";
  }

  async function tasksPage() {
    const form = $("#filters");
    const rows = $("#task-rows");
    const types = await api("GET", "/api/v1/task-types");
    for (const type of types.data.task_types || []) $("#type-filter").append(el("option", { text: type.name }));
    const params = new URLSearchParams(window.location.search);
    form.status.value = params.get("status") || "";
    form.name.value = params.get("name") || "";
    form.tag.value = params.getAll("tag").join(" ");
    const schedule = params.get("schedule_id"); // a schedule's runs, from its "Runs" link
    if (schedule) showSchedule(schedule);
    const workflow = params.get("workflow_id"); // a workflow's steps and items, from its page
    if (workflow) showWorkflow(workflow);
    const cursors = [null]; // the cursor of each page read so far, changed in place
    let source = null;

    function query(extra) {
      const q = new URLSearchParams({ limit: "25", ...extra });
      if (schedule) q.set("schedule_id", schedule);
      if (workflow) q.set("workflow_id", workflow);
      if (form.status.value) q.set("status", form.status.value);
      if (form.name.value) q.set("name", form.name.value);
      for (const tag of words(form.tag.value)) q.append("tag", tag);
      return q;
    }

    async function load() {
      const cursor = cursors[cursors.length - 1];
      const result = await api("GET", "/api/v1/tasks?" + query(cursor ? { cursor } : {}));
      if (result.status !== 200) return notice(result.data.error);
      notice("");
      rows.replaceChildren(...result.data.tasks.map(taskRow));
      $("#pick-all").checked = false;
      refreshBulk();
      $("#empty").hidden = result.data.tasks.length > 0;
      $("#next-page").hidden = !result.data.next_cursor;
      $("#next-page").dataset.cursor = result.data.next_cursor || "";
      $("#first-page").hidden = cursors.length === 1;
    }

    function follow() {
      if (source) source.close();
      const q = query({});
      q.delete("limit");
      q.delete("schedule_id"); // the stream filters by status, type and tags; the schedule is matched here
      q.delete("workflow_id"); // and the workflow
      source = new EventSource("/api/v1/events?" + q);
      source.onopen = () => ($("#live").textContent = "live");
      source.onerror = () => ($("#live").textContent = "reconnecting…");
      source.addEventListener("task", (event) => {
        const task = JSON.parse(event.data);
        if (schedule && task.schedule_id !== schedule) return;
        if (workflow && task.workflow_id !== workflow) return;
        const row = rows.querySelector(`tr[data-id="${task.id}"]`);
        if (row) return updateRow(row, task);
        if (cursors.length === 1 && !rows.querySelector(`tr[data-id="${task.id}"]`)) {
          rows.prepend(taskRow(task)); // a new task: on top of the newest page, the page keeps its size
          if (rows.children.length > 25) rows.lastElementChild.remove();
          $("#empty").hidden = true;
        }
      });
    }

    const refreshBulk = bulkBar(rows, form, load);
    form.addEventListener("change", () => {
      const q = query({});
      q.delete("limit");
      history.replaceState(null, "", q.toString() ? "/?" + q : "/");
      cursors.splice(0, cursors.length, null);
      load();
      follow();
    });
    form.addEventListener("submit", (event) => event.preventDefault());
    pager(cursors, load);
    await load();
    follow();
  }

  // --- the task list's selection and bulk actions ---------------------------------------------

  function bulkBar(rows, form, reload) {
    const selected = () => [...rows.querySelectorAll("input.pick:checked")].map((box) => box.closest("tr"));
    const count = $("#selected-count");
    const retryFailed = $("#retry-failed-type");

    function refresh() {
      const picked = selected();
      count.textContent = picked.length ? `${picked.length} selected` : "";
      $("#cancel-selected").disabled = !picked.some((row) => !TERMINAL.includes(row.dataset.status));
      $("#retry-selected").disabled = !picked.some((row) => ["FAILED", "CANCELLED"].includes(row.dataset.status));
      retryFailed.hidden = !form.name.value;
      retryFailed.textContent = "Retry all failed " + form.name.value;
    }

    async function each(action, wanted) {
      const picked = selected().filter((row) => wanted(row.dataset.status));
      const answers = await Promise.all(picked.map((row) => api("POST", `/api/v1/tasks/${row.dataset.id}/${action}`)));
      const refused = answers.filter((answer) => answer.status >= 400);
      await reload();
      const done = action === "cancel" ? "cancelled" : "retried";
      notice(`${picked.length - refused.length} ${done}` + (refused.length ? `; ${refused.length} refused: ${refused[0].data.error}` : "."));
    }

    rows.addEventListener("change", (event) => event.target.matches("input.pick") && refresh());
    $("#pick-all").addEventListener("change", (event) => {
      for (const box of rows.querySelectorAll("input.pick")) box.checked = event.target.checked;
      refresh();
    });
    $("#cancel-selected").addEventListener("click", () => each("cancel", (status) => !TERMINAL.includes(status)));
    $("#retry-selected").addEventListener("click", () => each("retry", (status) => ["FAILED", "CANCELLED"].includes(status)));
    retryFailed.addEventListener("click", async () => {
      const name = form.name.value;
      if (!window.confirm(`Retry every failed ${name} task not retried yet?`)) return;
      const answer = await api("POST", "/api/v1/tasks/retry", { name: name, status: ["FAILED"] });
      await reload();
      if (answer.status !== 200) return notice(answer.data.error);
      notice(`${answer.data.count} failed ${name} tasks retried` + (answer.data.more ? "; more match: press again." : "."));
    });
    return refresh;
  }

  // A list's pages: `cursors` holds the cursor of each page read so far (null: the first).
  function pager(cursors, load) {
    $("#next-page").addEventListener("click", () => {
      cursors.push($("#next-page").dataset.cursor);
      load();
    });
    $("#first-page").addEventListener("click", () => {
      cursors.splice(0, cursors.length, null);
      load();
    });
  }

  async function showSchedule(id) {
    const found = await api("GET", "/api/v1/schedules/" + id);
    const name = found.status === 200 ? found.data.name : id;
    const all = new URLSearchParams(window.location.search);
    all.delete("schedule_id");
    $("#schedule-filter").replaceChildren(
      "Runs of the schedule ",
      el("strong", { text: name }),
      " · ",
      el("a", { href: all.toString() ? "/?" + all : "/", text: "every task" })
    );
    $("#schedule-filter").hidden = false;
  }

  async function showWorkflow(id) {
    const found = await api("GET", "/api/v1/workflows/" + id);
    const name = found.status === 200 ? found.data.name : id;
    const all = new URLSearchParams(window.location.search);
    all.delete("workflow_id");
    $("#schedule-filter").replaceChildren(
      "Steps of the workflow ",
      el("a", { href: "/dashboard/workflows/" + id, text: name }),
      " · ",
      el("a", { href: all.toString() ? "/?" + all : "/", text: "every task" })
    );
    $("#schedule-filter").hidden = false;
  }

  // --- workflows --------------------------------------------------------------------------------

  function workflowRow(w) {
    const link = el("a", { href: "/dashboard/workflows/" + w.id, text: w.name });
    const status = el("span", {});
    badge(status, w.status);
    return el(
      "tr",
      { "data-id": w.id },
      el("td", { "data-label": "Workflow" }, link, " ", el("span", { class: "mono muted", text: w.id.slice(0, 8) })),
      el("td", { "data-label": "Status" }, status),
      el("td", { "data-label": "Created", text: when(w.created_at) }),
      el("td", { "data-label": "Ended", text: when(w.completed_at) })
    );
  }

  async function workflowsPage() {
    const form = $("#workflow-filters");
    const cursors = [null]; // the cursor of each page read so far, changed in place

    async function load() {
      const q = new URLSearchParams({ limit: "25" });
      if (form.status.value) q.set("status", form.status.value);
      const cursor = cursors[cursors.length - 1];
      if (cursor) q.set("cursor", cursor);
      const found = await api("GET", "/api/v1/workflows?" + q);
      if (found.status !== 200) return notice(found.data.error);
      $("#workflow-rows").replaceChildren(...found.data.workflows.map(workflowRow));
      $("#empty").hidden = found.data.workflows.length > 0;
      $("#next-page").hidden = !found.data.next_cursor;
      $("#next-page").dataset.cursor = found.data.next_cursor || "";
      $("#first-page").hidden = cursors.length === 1;
    }

    // A step's change may change its workflow: the newest page is read again, at most once a second.
    let pending = null;
    const source = new EventSource("/api/v1/events");
    source.addEventListener("open", () => ($("#live").textContent = "live"));
    source.addEventListener("error", () => ($("#live").textContent = "reconnecting…"));
    source.addEventListener("task", (event) => {
      const task = JSON.parse(event.data);
      if (!task.workflow_id || cursors.length !== 1 || pending) return;
      pending = setTimeout(() => {
        pending = null;
        load();
      }, 1000);
    });
    form.addEventListener("change", () => {
      cursors.splice(0, cursors.length, null);
      load();
    });
    form.addEventListener("submit", (event) => event.preventDefault());
    pager(cursors, load);
    await load();
  }

  function stepOutcome(step) {
    if (step.map) {
      const items = step.map.items;
      const parts = [items.completed + " of " + items.total + " done"];
      for (const name of ["running", "waiting", "failed", "cancelled"]) if (items[name]) parts.push(items[name] + " " + name);
      return parts.join(" · ");
    }
    if (step.error) return step.error;
    if (step.status === "WAITING" && step.waiting_for.length) return "waits for " + step.waiting_for.join(", ");
    return step.result === null || step.result === undefined ? "–" : JSON.stringify(step.result);
  }

  function stepRow(step) {
    const status = el("span", {});
    badge(status, step.status || "–");
    const name = step.task_id ? el("a", { href: "/dashboard/tasks/" + step.task_id, text: step.id }) : step.id;
    return el(
      "tr",
      { "data-step": step.id },
      el("td", { "data-label": "Step" }, name, step.map ? " (map)" : ""),
      el("td", { "data-label": "Type", text: step.task }),
      el("td", { "data-label": "Status" }, status),
      el("td", { "data-label": "After", text: step.after.length ? step.after.join(", ") + (step.join === "all_done" ? " (all done)" : "") : "–" }),
      el("td", { "data-label": "Attempts", text: String(step.attempts) }),
      el("td", { "data-label": "Outcome", class: "outcome", text: stepOutcome(step) })
    );
  }

  async function workflowPage() {
    const id = document.body.dataset.workflowId;

    function render(w) {
      $("#workflow-name").textContent = w.name + " · " + w.id;
      badge($("#status"), w.status);
      $("#workflow-error").textContent = w.error || "";
      $("#workflow-error").hidden = !w.error;
      $("#cancel").disabled = w.status !== "RUNNING";
      $("#resume").disabled = !["FAILED", "CANCELLED"].includes(w.status);
      $("#step-rows").replaceChildren(...w.steps.map(stepRow));
      const facts = [
        ["Created", when(w.created_at)],
        ["Ended", when(w.completed_at)],
        ["On failure", w.on_failure],
        ["Owner", w.owner],
      ];
      const list = [];
      for (const [name, value] of facts) list.push(el("dt", { text: name }), el("dd", { text: value }));
      list.push(el("dt", { text: "Its tasks" }), el("dd", {}, el("a", { href: "/?workflow_id=" + w.id, text: "every step and item" })));
      $("#timeline").replaceChildren(...list);
      $("#input").textContent = json(w.input);
    }

    async function read() {
      const found = await api("GET", "/api/v1/workflows/" + id);
      if (found.status !== 200) return notice(found.data.error);
      render(found.data);
      return found.data;
    }

    let source = null;
    function follow() {
      if (source) source.close();
      source = new EventSource("/api/v1/workflows/" + id + "/events");
      source.addEventListener("workflow", (event) => {
        const w = JSON.parse(event.data);
        render(w);
        if (w.status !== "RUNNING") source.close();
      });
      source.addEventListener("task", () => read());
    }

    const first = await read();
    if (first && first.status === "RUNNING") follow();
    $("#cancel").addEventListener("click", async () => {
      const result = await api("POST", "/api/v1/workflows/" + id + "/cancel");
      if (result.status === 200) {
        notice("Cancelled: steps not started will not run; running ones are asked to stop.");
        render(result.data);
      } else notice(result.data.error);
    });
    $("#resume").addEventListener("click", async () => {
      const result = await api("POST", "/api/v1/workflows/" + id + "/resume");
      if (result.status === 202) {
        notice("Resumed: the failed and cancelled steps run again.");
        render(result.data);
        follow();
      } else notice(result.data.error);
    });
  }

  // --- one task -------------------------------------------------------------------------------

  async function taskPage() {
    const id = document.body.dataset.taskId;
    let current = null;

    function render(task) {
      current = task;
      $("#task-name").textContent = task.name + " · " + task.id;
      badge($("#status"), task.status);
      const value = task.progress ?? (task.status === "COMPLETED" ? 100 : 0);
      $("#progress").value = value;
      $("#progress").textContent = value + " %";
      $("#progress-text").textContent = value + " %";
      $("#progress-message").textContent = task.progress_message || "\u00a0";
      $("#cancel").disabled = TERMINAL.includes(task.status);
      $("#retry").disabled = !["FAILED", "CANCELLED"].includes(task.status);
      const facts = [
        ["Created", when(task.created_at)],
        ["Due", when(task.run_at)],
        ["Started", when(task.started_at)],
        ["Finished", when(task.completed_at)],
        ["Attempts", String(task.attempts)],
        ["Priority", String(task.priority)],
        ["Queue", task.queue + (task.waiting_for && task.waiting_for.queue_paused ? " (paused: waits until it is resumed)" : "")],
        ["Owner", task.owner],
        ["Cancel requested", task.cancel_requested ? "yes" : "no"],
      ];
      const list = [];
      for (const [name, value] of facts) list.push(el("dt", { text: name }), el("dd", { text: value }));
      if (task.retry_of) {
        list.push(el("dt", { text: "Retry of" }), el("dd", {}, el("a", { href: "/dashboard/tasks/" + task.retry_of, text: task.retry_of })));
      }
      if (task.schedule_id) {
        const runs = el("a", { href: "/?schedule_id=" + task.schedule_id, text: "its runs" });
        list.push(el("dt", { text: "Schedule" }), el("dd", {}, "fire time " + when(task.scheduled_for) + " · ", runs));
      }
      if (task.workflow_id) {
        const link = el("a", { href: "/dashboard/workflows/" + task.workflow_id, text: "its workflow" });
        list.push(el("dt", { text: "Workflow" }), el("dd", {}, "step " + (task.step || "(replaced on resume)") + " of ", link));
      }
      if (task.concurrency) {
        const c = task.concurrency;
        const held = task.waiting_for && task.waiting_for.concurrency ? "waits for a slot" : c.slot === null ? "holds no slot" : "holds slot " + c.slot;
        list.push(el("dt", { text: "Concurrency key" }), el("dd", { class: "mono", text: c.key + " · limit " + c.limit + " · " + held }));
      }
      if (task.webhook) {
        const events = task.webhook.events ? " (" + task.webhook.events.join(", ") + ")" : " (every ending)";
        list.push(el("dt", { text: "Webhook" }), el("dd", { class: "mono", text: task.webhook.url + events }));
      }
      if (task.retry_policy) {
        const policy = task.retry_policy;
        const text = "up to " + policy.max_retries + " retries, on " + (policy.on === "transient" ? "transient failures" : "any failure");
        list.push(el("dt", { text: "Retry policy" }), el("dd", { text }));
      }
      $("#timeline").replaceChildren(...list);
      $("#tags").replaceChildren(...tagChips(task.tags));
      $("#parameters").textContent = json(task.parameters);
      if (task.status === "FAILED" || (task.status === "CANCELLED" && task.error)) {
        $("#outcome-title").textContent = "Error";
        $("#outcome").textContent = task.error || "–";
      } else {
        $("#outcome-title").textContent = "Result";
        $("#outcome").textContent = task.result === null || task.result === undefined ? "–" : json(task.result);
      }
    }

    const first = await api("GET", "/api/v1/tasks/" + id);
    if (first.status !== 200) return notice(first.data.error);
    render(first.data);
    if (!TERMINAL.includes(first.data.status)) {
      const source = new EventSource("/api/v1/tasks/" + id + "/events");
      source.addEventListener("task", (event) => {
        const task = JSON.parse(event.data);
        render(task);
        if (TERMINAL.includes(task.status)) source.close();
      });
    }
    $("#cancel").addEventListener("click", async () => {
      const result = await api("POST", "/api/v1/tasks/" + id + "/cancel");
      if (result.status === 200 || result.status === 202) {
        notice(result.status === 200 ? "Cancelled." : "Cancellation requested: the task stops at its next step.");
        render(result.data);
      } else notice(result.data.error);
    });
    $("#retry").addEventListener("click", async () => {
      const result = await api("POST", "/api/v1/tasks/" + id + "/retry");
      if (result.status === 201) window.location.assign("/dashboard/tasks/" + result.data.id);
      else notice(result.data.error);
    });
    return current;
  }

  // --- submit ---------------------------------------------------------------------------------

  function parameterField(name, schema, required) {
    const id = "e-p-" + name;
    const label = el("label", { for: "f-" + id, text: name + (required ? " *" : "") });
    let input;
    const type = [].concat(schema.type || "string").filter((t) => t !== "null")[0];
    if (schema.enum) {
      input = el("select", { id: "f-" + id, name });
      if (!required) input.append(el("option", { value: "", text: "(default)" }));
      for (const value of schema.enum) input.append(el("option", { value: String(value), text: String(value) }));
    } else if (type === "integer" || type === "number") {
      input = el("input", {
        id: "f-" + id,
        name,
        type: "number",
        step: type === "integer" ? "1" : "any",
        min: schema.minimum,
        max: schema.maximum,
        inputmode: type === "integer" ? "numeric" : "decimal",
      });
    } else if (type === "boolean") {
      input = el("input", { id: "f-" + id, name, type: "checkbox" });
    } else if (type === "object" || type === "array") {
      input = el("textarea", { id: "f-" + id, name, rows: "3", spellcheck: "false", placeholder: "JSON" });
    } else {
      input = el("input", { id: "f-" + id, name, maxlength: schema.maxLength });
    }
    input.dataset.kind = type || "string";
    if (schema.default !== undefined && type !== "boolean") input.placeholder = "default: " + JSON.stringify(schema.default);
    if (schema.default === true && type === "boolean") input.checked = true;
    const hint = schema.description ? el("p", { class: "muted", text: schema.description }) : "";
    return el("div", { class: "field" }, label, input, hint, el("p", { class: "field-error", id, hidden: true }));
  }

  function readParameters(container) {
    const parameters = {};
    const problems = {};
    for (const input of container.querySelectorAll("input, select, textarea")) {
      const kind = input.dataset.kind;
      if (kind === "boolean") {
        parameters[input.name] = input.checked;
        continue;
      }
      const raw = input.value.trim();
      if (raw === "") continue;
      if (kind === "integer" || kind === "number") {
        const value = Number(raw);
        if (Number.isNaN(value)) problems[input.name] = ["Not a number."];
        else parameters[input.name] = value;
      } else if (kind === "object" || kind === "array") {
        try {
          parameters[input.name] = JSON.parse(raw);
        } catch (error) {
          problems[input.name] = ["Not valid JSON."];
        }
      } else {
        parameters[input.name] = raw;
      }
    }
    return { parameters, problems };
  }

  // The form's "When it ends" part: a webhook (all three endings unless fewer are ticked) and a
  // retry policy, each only when given.
  function endings(form) {
    const options = {};
    const url = form.webhook_url.value.trim();
    if (url) {
      const events = [...form.querySelectorAll("[name=webhook_events]:checked")].map((box) => box.value);
      options.webhook = events.length === 3 ? { url } : { url, events };
    }
    const retries = form.max_retries.value.trim();
    if (retries !== "" || form.retry_on.value) {
      options.retry_policy = {};
      if (retries !== "") options.retry_policy.max_retries = Number(retries);
      if (form.retry_on.value) options.retry_policy.on = form.retry_on.value;
    }
    return options;
  }

  async function submitPage() {
    const form = $("#submit-form");
    const select = $("#task-type");
    const types = (await api("GET", "/api/v1/task-types")).data.task_types || [];
    for (const type of types) select.append(el("option", { value: type.name, text: type.name }));
    const wanted = new URLSearchParams(window.location.search).get("name");
    if (wanted) select.value = wanted;

    function build() {
      const type = types.find((t) => t.name === select.value);
      const fieldset = $("#parameter-fields");
      fieldset.replaceChildren(el("legend", { text: "Parameters" }));
      if (!type) return;
      $("#task-description").textContent = type.description || "";
      const schema = type.parameters || {};
      const required = schema.required || [];
      for (const [name, property] of Object.entries(schema.properties || {})) {
        fieldset.append(parameterField(name, property, required.includes(name)));
      }
    }
    select.addEventListener("change", build);
    build();

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      formError("e-form", "");
      const { parameters, problems } = readParameters($("#parameter-fields"));
      if (Object.keys(problems).length) {
        showErrors({ parameters: problems }, "e-");
        return;
      }
      const body = { name: select.value, parameters };
      if (form.priority.value) body.priority = Number(form.priority.value);
      if (form.timeout_seconds.value) body.timeout_seconds = Number(form.timeout_seconds.value);
      if (words(form.tags.value).length) body.tags = words(form.tags.value);
      if (form.countdown.value) body.countdown = Number(form.countdown.value);
      if (form.run_at.value) body.run_at = new Date(form.run_at.value).toISOString();
      Object.assign(body, endings(form));
      const key = form.idempotency_key.value.trim();
      const result = await api("POST", "/api/v1/tasks", body, key ? { "Idempotency-Key": key } : {});
      if (result.status === 202 || result.status === 200) {
        window.location.assign("/dashboard/tasks/" + result.data.id);
        return;
      }
      const unplaced = showErrors(result.data.details, "e-");
      formError("e-form", unplaced.length ? result.data.error : result.status === 400 ? "" : result.data.error);
      const firstInvalid = form.querySelector("[aria-invalid]");
      if (firstInvalid) firstInvalid.focus();
    });
  }

  // --- schedules ------------------------------------------------------------------------------

  const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

  function inZone(value, zone) {
    try {
      return new Date(value).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short", timeZone: zone });
    } catch (error) {
      return new Date(value).toISOString().slice(0, 16).replace("T", " ") + " UTC"; // a zone this browser lacks
    }
  }

  // A fire time in the schedule's own zone and in the browser's, each labelled.
  function bothZones(value, zone) {
    if (!value) return [el("span", { text: "–" })];
    const there = el("span", { class: "when-there" }, inZone(value, zone) + " ", el("span", { class: "zone", text: zone }));
    const here = inZone(value, BROWSER_ZONE);
    if (here === inZone(value, zone)) return [there, el("span", { class: "zone", text: " = your time" })];
    const mine = el("span", { class: "when-here muted" }, here + " ", el("span", { class: "zone", text: "your time" }));
    return [there, el("br"), mine];
  }

  function scheduleRow(s, actions) {
    const cell = (label, attributes, ...children) => el("td", { "data-label": label, ...attributes }, ...children);
    return el(
      "tr",
      { "data-id": s.id },
      cell("Name", { text: s.name }),
      cell("Task", {}, s.task, ...tagChips(s.tags)),
      cell("Cron", { class: "mono", text: s.cron }),
      cell("Next run", { class: "next-run" }, ...(s.enabled ? bothZones(s.next_run_at, s.timezone) : [el("span", { text: "– (paused)" })])),
      cell("State", { text: s.enabled ? "active" : "paused" }),
      cell("Actions", { class: "row-actions" }, ...actions)
    );
  }

  function scheduleActions(s, load, edit) {
    const runs = el("a", { href: "/?schedule_id=" + s.id, class: "button", text: "Runs" });
    const change = el("button", { type: "button", text: "Edit" });
    change.addEventListener("click", () => edit(s));
    const toggle = el("button", { type: "button", text: s.enabled ? "Pause" : "Resume" });
    toggle.addEventListener("click", async () => {
      const answer = await api("PATCH", "/api/v1/schedules/" + s.id, { enabled: !s.enabled });
      if (answer.status !== 200) notice(answer.data.error);
      load();
    });
    const remove = el("button", { type: "button", text: "Delete", class: "danger" });
    remove.addEventListener("click", async () => {
      if (!window.confirm("Delete the schedule " + s.name + "?")) return;
      const answer = await api("DELETE", "/api/v1/schedules/" + s.id);
      if (answer.status !== 204) notice(answer.data.error);
      load();
    });
    return [runs, change, toggle, remove];
  }

  function scheduleBody(form, parameters, editing) {
    const tags = words(form.tags.value);
    const body = {
      name: form.name.value,
      task: form.task.value,
      parameters,
      cron: form.cron.value,
      timezone: form.timezone.value || "UTC",
      priority: Number(form.priority.value || 5),
    };
    if (tags.length) body.tags = tags;
    else if (editing) body.tags = null; // emptied: the tasks it makes from now on have none
    return body;
  }

  function cronPreview(form) {
    let timer = null;
    async function preview() {
      const zone = form.timezone.value || "UTC";
      const result = await api("GET", "/api/v1/schedules/preview?" + new URLSearchParams({ cron: form.cron.value, timezone: zone }));
      const list = $("#cron-preview");
      if (result.status === 200) {
        formError("se-cron", "");
        formError("se-timezone", "");
        list.replaceChildren(...result.data.next_run_times.map((t) => el("li", {}, ...bothZones(t, zone))));
      } else {
        list.replaceChildren();
        showErrors(result.data.details, "se-");
      }
    }
    for (const input of [form.cron, form.timezone]) {
      input.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(preview, 250);
      });
    }
    return preview;
  }

  async function schedulesPage() {
    const rows = $("#schedule-rows");
    const form = $("#schedule-form");
    const types = (await api("GET", "/api/v1/task-types")).data.task_types || [];
    for (const type of types) form.task.append(el("option", { value: type.name, text: type.name }));
    const preview = cronPreview(form);
    let editing = null; // the schedule the form changes; null: the form makes a new one

    function edit(s) {
      editing = s;
      for (const field of ["name", "task", "cron", "timezone", "priority"]) form[field].value = s[field];
      form.parameters.value = JSON.stringify(s.parameters);
      form.tags.value = (s.tags || []).join(" ");
      $("#schedule-form-title").textContent = "Edit the schedule " + s.name;
      $("#schedule-save").textContent = "Save changes";
      $("#cancel-edit").hidden = false;
      showErrors({}, "se-");
      preview();
      form.name.focus();
    }

    function stopEditing() {
      editing = null;
      form.reset();
      $("#schedule-form-title").textContent = "New schedule";
      $("#schedule-save").textContent = "Create schedule";
      $("#cancel-edit").hidden = true;
      preview();
    }

    async function load() {
      const result = await api("GET", "/api/v1/schedules?limit=100");
      if (result.status !== 200) return notice(result.data.error);
      const schedules = result.data.schedules;
      $("#no-schedules").hidden = schedules.length > 0;
      rows.replaceChildren(...schedules.map((s) => scheduleRow(s, scheduleActions(s, load, edit))));
    }

    $("#cancel-edit").addEventListener("click", stopEditing);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const saved = await saveSchedule(form, editing);
      if (!saved) return;
      notice("Schedule " + saved.name + (editing ? " saved" : " created") + "; next run " + when(saved.next_run_at) + ".");
      stopEditing();
      load();
    });
    await load();
    await preview();
  }

  // Creates the schedule, or changes `editing`; the saved schedule, or null with the errors shown.
  async function saveSchedule(form, editing) {
    formError("se-form", "");
    let parameters;
    try {
      parameters = JSON.parse(form.parameters.value || "{}");
    } catch (error) {
      showErrors({ parameters: ["Not valid JSON."] }, "se-");
      return null;
    }
    const body = scheduleBody(form, parameters, editing);
    const result = editing
      ? await api("PATCH", "/api/v1/schedules/" + editing.id, body)
      : await api("POST", "/api/v1/schedules", body);
    if (result.status === 200 || result.status === 201) {
      showErrors({}, "se-");
      return result.data;
    }
    // Parameter errors name the parameter: show them under the JSON box.
    const details = { ...(result.data.details || {}) };
    if (details.parameters && !Array.isArray(details.parameters)) {
      details.parameters = Object.entries(details.parameters).map(([k, v]) => k + ": " + [].concat(v).join(" "));
    }
    const unplaced = showErrors(details, "se-");
    formError("se-form", unplaced.length || result.status !== 400 ? result.data.error : "");
    return null;
  }

  // --- queues, workers and the last hour ------------------------------------------------------

  function chart(svg, stats) {
    const types = stats.task_types;
    const max = Math.max(1, ...types.map((t) => t.total));
    const width = 600;
    const barHeight = 22;
    const gap = 10;
    const labelWidth = 230;
    svg.setAttribute("viewBox", `0 0 ${width} ${types.length * (barHeight + gap) + 10}`);
    const ns = "http://www.w3.org/2000/svg";
    const nodes = [];
    types.forEach((type, index) => {
      const y = 5 + index * (barHeight + gap);
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", "0");
      label.setAttribute("y", String(y + barHeight - 6));
      label.textContent = type.task_type;
      nodes.push(label);
      let x = labelWidth;
      for (const status of TERMINAL) {
        const count = type.finished[status] || 0;
        const w = ((width - labelWidth - 60) * count) / max;
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", String(x));
        rect.setAttribute("y", String(y));
        rect.setAttribute("width", String(w));
        rect.setAttribute("height", String(barHeight));
        rect.setAttribute("class", "bar s-" + status.toLowerCase());
        const title = document.createElementNS(ns, "title");
        title.textContent = `${type.task_type}: ${count} ${status.toLowerCase()}`;
        rect.append(title);
        nodes.push(rect);
        x += w;
      }
      const total = document.createElementNS(ns, "text");
      total.setAttribute("x", String(x + 6));
      total.setAttribute("y", String(y + barHeight - 6));
      total.textContent = String(type.total);
      nodes.push(total);
    });
    svg.replaceChildren(...nodes);
  }

  function queueActions(q, load) {
    // Admins pause and resume the task types' queues (not the webhooks' deliveries).
    if (!document.body.dataset.operator || q.name === "webhooks") return [];
    const toggle = el("button", { type: "button", text: q.paused ? "Resume" : "Pause", "aria-label": (q.paused ? "Resume " : "Pause ") + q.name });
    toggle.addEventListener("click", async () => {
      const answer = await api("POST", "/api/v1/queues/" + encodeURIComponent(q.name) + (q.paused ? "/resume" : "/pause"));
      await load();
      if (answer.status !== 200) notice(answer.data.error);
      else notice(q.paused ? `Queue ${q.name} resumed: ${answer.data.released} held tasks released.` : `Queue ${q.name} paused: its tasks wait until it is resumed.`);
    });
    return [toggle];
  }

  async function queuesPage() {
    async function load() {
      const [queues, stats] = await Promise.all([api("GET", "/api/v1/queues"), api("GET", "/api/v1/stats?window=1h")]);
      if (queues.status !== 200) return notice(queues.data.error);
      notice("");
      $("#workers-online").textContent = String(queues.data.workers_online);
      $("#total-pending").textContent = String(queues.data.totals.PENDING);
      $("#total-started").textContent = String(queues.data.totals.STARTED);
      $("#queue-rows").replaceChildren(
        ...queues.data.queues.map((q) =>
          el(
            "tr",
            {},
            el("td", { text: q.name }),
            el("td", { text: String(q.messages_waiting) }),
            el("td", { text: String(q.pending) }),
            el("td", { text: String(q.started) }),
            el("td", { text: q.oldest_pending_age_seconds === null ? "–" : q.oldest_pending_age_seconds.toFixed(1) + " s" }),
            el("td", { class: "queue-state", text: q.paused ? `paused (${q.held} held)` : "running" }),
            el("td", { class: "row-actions" }, ...queueActions(q, load))
          )
        )
      );
      labelCells($("#queue-rows"));
      if (stats.status === 200) {
        chart($("#chart"), stats.data);
        const seconds = (v) => (v === null ? "–" : v.toFixed(3) + " s");
        $("#stat-rows").replaceChildren(
          ...stats.data.task_types.map((t) =>
            el(
              "tr",
              {},
              el("td", { text: t.task_type }),
              el("td", { text: String(t.finished.COMPLETED) }),
              el("td", { text: String(t.finished.FAILED) }),
              el("td", { text: String(t.finished.CANCELLED) }),
              el("td", { text: t.throughput_per_minute.toFixed(2) }),
              el("td", { text: seconds(t.run_seconds.p95) }),
              el("td", { text: seconds(t.wait_seconds.p95) })
            )
          )
        );
        labelCells($("#stat-rows"));
      }
    }
    await load();
    setInterval(load, 5000);
  }

  // --- sign in and out ------------------------------------------------------------------------

  function loginPage() {
    const form = $("#login-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const next = new URLSearchParams(window.location.search).get("next") || "/";
      const result = await api("POST", "/dashboard/login", { key: form.key.value, next: next });
      if (result.status === 200) {
        window.location.assign(result.data.next); // the server's: a page of this dashboard, or "/"
        return;
      }
      showErrors(result.data.details || {}, "le-");
      form.key.focus();
    });
  }

  const signOut = $("#sign-out");
  if (signOut) {
    signOut.addEventListener("click", async () => {
      await api("POST", "/dashboard/logout");
      window.location.assign("/dashboard/login");
    });
  }

  const pages = {
    tasks: tasksPage,
    task: taskPage,
    workflows: workflowsPage,
    workflow: workflowPage,
    submit: submitPage,
    schedules: schedulesPage,
    queues: queuesPage,
    login: loginPage,
  };
  const start = pages[document.body.dataset.page];
  if (start) start();
})();
