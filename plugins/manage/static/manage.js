// Manage: destructive forms ask first (data-confirm); tables marked data-live follow a server-sent
// event stream and replace their rows with the server-rendered ones it sends. No build step.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});

function follow(body) {
  const status = document.querySelector("[data-live-status]");
  const url = new URL(body.dataset.live, window.location.href);
  url.searchParams.set("rows", "html");
  const back = body.querySelector('input[name="back"]');
  if (back) url.searchParams.set("back", back.value);
  else if (window.location.pathname.endsWith("/recovery")) url.searchParams.set("back", "recovery");
  const source = new EventSource(url);
  let pending = null;
  const apply = () => {
    if (pending === null) return;
    body.innerHTML = pending;
    pending = null;
    body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
  };
  source.addEventListener("open", () => { if (status) status.textContent = "Live"; });
  source.addEventListener("error", () => { if (status) status.textContent = "Live updates interrupted; retrying…"; });
  source.addEventListener(body.dataset.event || "sandboxes", (event) => {
    const data = JSON.parse(event.data);
    const state = document.querySelector("[data-rollout-state]");
    if (state && typeof data.state === "string") state.textContent = data.state;
    if (typeof data.html !== "string") return;
    pending = data.html;
    // never pull a control from under the keyboard: wait until focus leaves the table
    if (!body.contains(document.activeElement)) apply();
  });
  body.addEventListener("focusout", () => setTimeout(() => { if (!body.contains(document.activeElement)) apply(); }, 0));
}

document.querySelectorAll("tbody[data-live]").forEach(follow);
