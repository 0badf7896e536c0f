// The copy buttons of code snippets: the only script of the pages.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent;
  navigator.clipboard.writeText(text).then(
    () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy"; }, 1500); },
    () => { button.textContent = "select and copy"; },
  );
});
