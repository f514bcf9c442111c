// Broadcasting's embeds, sized to their content. Include it on a page that frames /f/FEED/embed:
//   <script src="https://BROADCASTING-ORIGIN/embed.js" async></script>
// Each embed posts its content's height ({type: "broadcasting:height", feed, height}) to the page; this sets the
// height of the iframe that posted it. Only messages from the origin this script was loaded from are read.
(() => {
  const origin = new URL(document.currentScript.src).origin;
  addEventListener("message", (event) => {
    if (event.origin !== origin) return;
    const data = event.data;
    if (!data || data.type !== "broadcasting:height" || !Number.isFinite(data.height)) return;
    for (const frame of document.getElementsByTagName("iframe")) {
      if (frame.contentWindow === event.source) frame.style.height = `${Math.ceil(data.height)}px`;
    }
  });
})();
