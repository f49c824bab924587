// The chat room over one WebSocket: what is typed is sent, what the room says is shown.
//
// The socket reconnects when the server closes it: a reload or a restart of the server
// closes every WebSocket with 1001 ("going away"), and a server that is down for a moment
// ends the attempt with 1006.  Each retry waits twice as long as the one before (from half
// a second up to ten), with some jitter so that a room full of pages does not come back at
// the same instant; a connection that opens resets the wait.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const form = document.getElementById("send");
  const text = document.getElementById("text");
  const author = document.getElementById("author");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws/chat/${status.dataset.room}/`;
  const FIRST_DELAY = 500;
  const MAX_DELAY = 10000;
  let delay = FIRST_DELAY;
  let socket = null;

  function show(message) {
    const data = JSON.parse(message.data);
    if (data.error) return;
    const line = document.createElement("p");
    const who = document.createElement("b");
    who.textContent = data.author;
    line.append(who, `: ${data.text}`);
    log.append(line);
    log.scrollTop = log.scrollHeight;
  }

  function connect() {
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      delay = FIRST_DELAY;
      status.textContent = "Connected.";
      status.className = "ready";
    });
    socket.addEventListener("message", show);
    socket.addEventListener("close", (event) => {
      const wait = delay * (0.5 + Math.random() / 2);
      delay = Math.min(delay * 2, MAX_DELAY);
      status.textContent = `Disconnected (${event.code}); reconnecting…`;
      status.className = "pending";
      status.dataset.lastClose = String(event.code);
      setTimeout(connect, wait);
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!text.value.trim() || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ author: author.value, text: text.value }));
    text.value = "";
  });
  connect();
});
