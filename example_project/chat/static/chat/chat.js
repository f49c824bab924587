// The chat room over one WebSocket: what is typed is sent, what the room says is shown.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const form = document.getElementById("send");
  const text = document.getElementById("text");
  const author = document.getElementById("author");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/chat/${status.dataset.room}/`);

  socket.addEventListener("open", () => {
    status.textContent = "Connected.";
    status.className = "ready";
  });
  socket.addEventListener("close", () => {
    status.textContent = "Disconnected.";
    status.className = "pending";
  });
  socket.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    if (data.error) return;
    const line = document.createElement("p");
    const who = document.createElement("b");
    who.textContent = data.author;
    line.append(who, `: ${data.text}`);
    log.append(line);
    log.scrollTop = log.scrollHeight;
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!text.value.trim() || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ author: author.value, text: text.value }));
    text.value = "";
  });
});
