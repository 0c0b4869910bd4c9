// The page's own texts in Thai and English. Error texts come from the server, which
// localizes them by the Accept-Language header that api.js sends with this locale.

const STRINGS = {
  en: {
    skip: "Skip to the message box",
    loading: "Loading…",
    "auth.signIn": "Sign in",
    "auth.register": "Create an account",
    "auth.email": "Email",
    "auth.password": "Password",
    "auth.displayName": "Display name (optional)",
    "auth.noAccount": "No account yet?",
    "auth.haveAccount": "Already registered?",
    "auth.signOut": "Sign out",
    "auth.expired": "Your session has ended. Please sign in again.",
    "auth.signedOut": "You are signed out.",
    "conn.connecting": "Connecting…",
    "conn.open": "Live",
    "conn.reconnecting": "Connection lost. Reconnecting in {s} s…",
    "conn.refused": "The server refused the live connection from this site.",
    "list.heading": "Conversations",
    "list.new": "New chat",
    "list.more": "Load more",
    "list.empty": "No conversations yet.",
    "list.untitled": "New conversation",
    "list.noMessages": "No messages yet",
    "chat.back": "Back",
    "chat.newTitle": "New chat",
    "chat.titleLabel": "Title",
    "chat.save": "Save",
    "chat.cancel": "Cancel",
    "chat.rename": "Rename",
    "chat.delete": "Delete",
    "chat.older": "Load earlier messages",
    "chat.empty": "Ask anything to start.",
    "chat.messageLabel": "Message",
    "chat.placeholder": "Write a message…",
    "chat.send": "Send",
    "chat.stop": "Stop",
    "chat.hint": "Enter sends, Shift+Enter adds a line, Escape stops the answer.",
    "chat.deleted": "Conversation deleted.",
    "chat.deletedElsewhere": "This conversation was deleted in another window.",
    "chat.notFound": "This conversation does not exist or was deleted.",
    "chat.undo": "Undo",
    "msg.you": "You",
    "msg.assistant": "Assistant",
    "msg.sending": "Sending…",
    "msg.streaming": "Writing…",
    "msg.cancelled": "Stopped",
    "msg.failed": "Failed",
    "err.network": "The server cannot be reached. Check your connection and try again.",
    "err.generic": "Something went wrong. Please try again.",
    "err.historyLost": "The live stream of this answer was lost; showing the saved text.",
    "err.fields": "Check: {fields}.",
    "auth.passwordHint": "At least 8 characters.",
    "answer.all_providers_failed": "Sorry, no AI model could be reached just now. Please try again.",
    "answer.provider_failed": "Sorry, the answer broke off. Please try again.",
    "answer.answer_too_long": "The answer reached the length limit and was cut off there.",
    "answer.shutdown": "Sorry, the server restarted while answering. Please try again.",
    "answer.instance_lost": "Sorry, the answer was interrupted. Please try again.",
  },
  th: {
    skip: "ข้ามไปยังช่องพิมพ์ข้อความ",
    loading: "กำลังโหลด…",
    "auth.signIn": "เข้าสู่ระบบ",
    "auth.register": "สร้างบัญชี",
    "auth.email": "อีเมล",
    "auth.password": "รหัสผ่าน",
    "auth.displayName": "ชื่อที่แสดง (ไม่บังคับ)",
    "auth.noAccount": "ยังไม่มีบัญชี?",
    "auth.haveAccount": "มีบัญชีแล้ว?",
    "auth.signOut": "ออกจากระบบ",
    "auth.expired": "เซสชันของคุณสิ้นสุดแล้ว กรุณาเข้าสู่ระบบอีกครั้ง",
    "auth.signedOut": "คุณออกจากระบบแล้ว",
    "conn.connecting": "กำลังเชื่อมต่อ…",
    "conn.open": "ออนไลน์",
    "conn.reconnecting": "การเชื่อมต่อขาดหาย จะเชื่อมต่อใหม่ใน {s} วินาที…",
    "conn.refused": "เซิร์ฟเวอร์ปฏิเสธการเชื่อมต่อจากเว็บไซต์นี้",
    "list.heading": "บทสนทนา",
    "list.new": "แชตใหม่",
    "list.more": "โหลดเพิ่ม",
    "list.empty": "ยังไม่มีบทสนทนา",
    "list.untitled": "บทสนทนาใหม่",
    "list.noMessages": "ยังไม่มีข้อความ",
    "chat.back": "กลับ",
    "chat.newTitle": "แชตใหม่",
    "chat.titleLabel": "ชื่อบทสนทนา",
    "chat.save": "บันทึก",
    "chat.cancel": "ยกเลิก",
    "chat.rename": "เปลี่ยนชื่อ",
    "chat.delete": "ลบ",
    "chat.older": "โหลดข้อความก่อนหน้า",
    "chat.empty": "พิมพ์คำถามเพื่อเริ่มต้น",
    "chat.messageLabel": "ข้อความ",
    "chat.placeholder": "พิมพ์ข้อความ…",
    "chat.send": "ส่ง",
    "chat.stop": "หยุด",
    "chat.hint": "Enter เพื่อส่ง, Shift+Enter เพื่อขึ้นบรรทัดใหม่, Escape เพื่อหยุดคำตอบ",
    "chat.deleted": "ลบบทสนทนาแล้ว",
    "chat.deletedElsewhere": "บทสนทนานี้ถูกลบจากหน้าต่างอื่น",
    "chat.notFound": "ไม่พบบทสนทนานี้ หรือถูกลบไปแล้ว",
    "chat.undo": "เลิกทำ",
    "msg.you": "คุณ",
    "msg.assistant": "ผู้ช่วย",
    "msg.sending": "กำลังส่ง…",
    "msg.streaming": "กำลังเขียน…",
    "msg.cancelled": "หยุดแล้ว",
    "msg.failed": "ล้มเหลว",
    "err.network": "ติดต่อเซิร์ฟเวอร์ไม่ได้ กรุณาตรวจสอบการเชื่อมต่อแล้วลองใหม่",
    "err.generic": "เกิดข้อผิดพลาด กรุณาลองใหม่",
    "err.historyLost": "สตรีมของคำตอบนี้ขาดหาย กำลังแสดงข้อความที่บันทึกไว้",
    "err.fields": "โปรดตรวจสอบ: {fields}",
    "auth.passwordHint": "อย่างน้อย 8 ตัวอักษร",
    "answer.all_providers_failed": "ขออภัย ตอนนี้ไม่สามารถติดต่อโมเดล AI ได้ กรุณาลองใหม่อีกครั้ง",
    "answer.provider_failed": "ขออภัย การสร้างคำตอบหยุดกลางคัน กรุณาลองใหม่อีกครั้ง",
    "answer.answer_too_long": "คำตอบยาวเกินกำหนด จึงถูกตัดไว้เท่านี้",
    "answer.shutdown": "ขออภัย เซิร์ฟเวอร์รีสตาร์ตระหว่างสร้างคำตอบ กรุณาลองใหม่",
    "answer.instance_lost": "ขออภัย การสร้างคำตอบถูกขัดจังหวะ กรุณาลองใหม่",
  },
};

// The first of the browser's languages that we have wins; English when neither is listed.
function pickLocale(languages) {
  for (const tag of languages) {
    const primary = String(tag).toLowerCase().split("-")[0];
    if (primary === "th" || primary === "en") return primary;
  }
  return "en";
}

export const locale = pickLocale(
  navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"],
);

export function t(key, vars = {}) {
  const text = STRINGS[locale][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

// Fill the static page's texts (always as text, never as markup).
export function translatePage(root = document) {
  document.documentElement.lang = locale;
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
}

// Why an answer failed: our text for the codes we know (the server writes the message in its
// default language), else the server's.
export function answerError(error) {
  if (!error) return "";
  const key = `answer.${error.code}`;
  return STRINGS[locale][key] ?? error.message ?? "";
}
