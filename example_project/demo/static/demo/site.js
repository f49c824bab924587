// Proves the static files were served: the home page says so once this has run.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("js-status");
  if (status) {
    status.textContent = "JavaScript loaded from the static files.";
    status.className = "ready";
  }
});
