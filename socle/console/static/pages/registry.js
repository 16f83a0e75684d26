// Every page of the console: its route, its icon (vendor/icons.js), its place in the navigation, the action (RBAC, see
// docs/roles.md) a caller needs to see it, and its module (loaded on first visit). The API checks every
// call anyway; hiding pages only spares users buttons that would answer 403.
export const PAGES = [
  { path: 'chat', section: 'main', label: 'nav.chat', icon: 'message-square', action: 'model.use', module: './chat.js' },
  { path: 'knowledge', section: 'main', label: 'nav.knowledge', icon: 'library', action: 'knowledge.read', module: './knowledge.js' },
  { path: 'admin/teams', section: 'admin', label: 'nav.teams', icon: 'users', action: 'team.manage', module: './admin/teams.js' },
  { path: 'admin/users', section: 'admin', label: 'nav.users', icon: 'id-card', action: 'admin', module: './admin/users.js' },
  { path: 'admin/keys', section: 'admin', label: 'nav.keys', icon: 'key-round', action: 'keys.manage', module: './admin/keys.js' },
  { path: 'admin/budgets', section: 'admin', label: 'nav.budgets', icon: 'wallet', action: 'budget.manage', module: './admin/budgets.js' },
  { path: 'admin/models', section: 'admin', label: 'nav.models', icon: 'brain-circuit', action: 'admin', module: './admin/models.js' },
  { path: 'admin/usage', section: 'admin', label: 'nav.usage', icon: 'chart-line', action: 'usage.read', module: './admin/usage.js' },
  { path: 'admin/feedback', section: 'admin', label: 'nav.feedback', icon: 'thumbs-up', action: 'admin', module: './admin/feedback.js' },
  { path: 'admin/alerts', section: 'admin', label: 'nav.alerts', icon: 'bell', action: 'admin', module: './admin/alerts.js' },
  { path: 'admin/engines', section: 'admin', label: 'nav.engines', icon: 'server', action: 'admin', module: './admin/engines.js' },
  { path: 'admin/audit', section: 'admin', label: 'nav.audit', icon: 'shield-check', action: 'audit.read', module: './admin/audit.js' },
];

export const NAV_MESSAGES = {
  fr: {
    'nav.main': 'Assistant', 'nav.admin': 'Administration', 'nav.chat': 'Discussion', 'nav.knowledge': 'Connaissances',
    'nav.teams': 'Équipes', 'nav.users': 'Utilisateurs et services', 'nav.keys': 'Clés d’API', 'nav.budgets': 'Budgets et limites',
    'nav.models': 'Accès aux modèles', 'nav.usage': 'Consommation', 'nav.feedback': 'Avis des utilisateurs',
    'nav.alerts': 'Alertes', 'nav.engines': 'Moteurs', 'nav.audit': 'Journal d’audit',
  },
  en: {
    'nav.main': 'Assistant', 'nav.admin': 'Administration', 'nav.chat': 'Chat', 'nav.knowledge': 'Knowledge',
    'nav.teams': 'Teams', 'nav.users': 'Users and services', 'nav.keys': 'API keys', 'nav.budgets': 'Budgets and limits',
    'nav.models': 'Model access', 'nav.usage': 'Usage', 'nav.feedback': 'User feedback',
    'nav.alerts': 'Alerts', 'nav.engines': 'Engines', 'nav.audit': 'Audit log',
  },
};

export function visiblePages(me) {
  const actions = new Set(me.actions);
  return PAGES.filter((page) => actions.has(page.action));
}
