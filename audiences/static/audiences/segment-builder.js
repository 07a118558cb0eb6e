/* The segment builder: the rules JSON (docs/segment-rules.md) as nested groups of conditions.
 *
 * The `rules` textarea stays the source of truth: every edit in the builder writes it, the
 * JSON tab edits it directly and re-renders the builder when it parses. While editing, the
 * rules are POSTed to the preview view (debounced) for the count, a sample and the errors,
 * which are shown next to the node their path names. Labels come from the server
 * (gettext, json_script): no text is spelled here. Vanilla JS, no build step.
 */
(function () {
  "use strict";

  const CONDITION_TYPES = ["field", "attribute", "event", "consent", "identity", "score", "segment"];
  const KEY_ORDER = {
    field: ["field", "op", "value"],
    attribute: ["attribute", "op", "value"],
    event: ["event", "where", "within_days", "aggregate", "property", "op", "value"],
    consent: ["consent", "status"],
    identity: ["identity", "present"],
    score: ["score", "op", "value"],
    segment: ["segment"],
  };
  // Operators valid for each kind of value (docs/segment-rules.md, "Operators").
  const OPS_BY_KIND = {
    text: ["eq", "neq", "in", "not_in", "contains", "is_set", "is_not_set"],
    number: ["eq", "neq", "gt", "gte", "lt", "lte", "between", "in", "not_in", "is_set", "is_not_set"],
    date: [
      "less_than_days_ago",
      "more_than_days_ago",
      "anniversary_within_days",
      "gt",
      "gte",
      "lt",
      "lte",
      "between",
      "is_set",
      "is_not_set",
    ],
    boolean: ["eq", "neq", "is_set", "is_not_set"],
  };
  // Contact fields: names and such are text, created_at a date (audiences/segments/schema.py).
  const FIELD_OPS = {
    text: ["eq", "neq", "in", "not_in", "contains", "is_set", "is_not_set"],
    date: ["less_than_days_ago", "more_than_days_ago", "anniversary_within_days", "gt", "gte", "lt", "lte", "between", "eq", "neq"],
  };
  const SCORE_OPS = ["gte", "gt", "lte", "lt", "eq", "neq", "between"];
  const WHERE_OPS = ["eq", "neq", "in", "not_in", "contains", "gt", "gte", "lt", "lte", "between", "is_set", "is_not_set"];
  const AGGREGATE_OPS = ["gte", "gt", "eq", "neq", "lte", "lt"];
  const AGGREGATES = ["count", "sum", "avg", "max", "min"];
  const NO_VALUE_OPS = ["is_set", "is_not_set"];
  const LIST_OPS = ["in", "not_in"];
  const DAYS_OPS = ["more_than_days_ago", "less_than_days_ago", "anniversary_within_days"];
  const DEBOUNCE_MS = 400;

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(el.dataset, value);
      else if (name === "value") el.value = value;
      else el.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function readJSONScript(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function looksLikeDate(value) {
    return typeof value === "string" && /^\d{4}-\d{2}-\d{2}/.test(value);
  }

  function kindOfValue(value) {
    const first = Array.isArray(value) ? value[0] : value;
    if (typeof first === "boolean") return "boolean";
    if (typeof first === "number") return "number";
    if (looksLikeDate(first)) return "date";
    return null;
  }

  function valueShape(op) {
    if (NO_VALUE_OPS.includes(op)) return "none";
    if (LIST_OPS.includes(op)) return "list";
    if (op === "between") return "between";
    if (DAYS_OPS.includes(op)) return "days";
    return "scalar";
  }

  function ordered(type, node) {
    const result = {};
    for (const key of KEY_ORDER[type] || []) if (key in node) result[key] = node[key];
    for (const key of Object.keys(node)) if (!(key in result)) result[key] = node[key];
    return result;
  }

  class SegmentBuilder {
    constructor(textarea, config, labels, options) {
      this.textarea = textarea;
      this.config = config;
      this.L = labels;
      this.options = options;
      this.seq = 0;
      this.timer = null;
      this.listIds = 0;
      this.attributeTypes = Object.fromEntries(options.attributes.map((a) => [a.key, a.type]));
      this.buildFrame();
      this.loadFromTextarea({ initial: true });
      if (config.errors && config.errors.length) this.showErrors(config.errors);
    }

    t(key) {
      return this.L[key] !== undefined ? this.L[key] : key;
    }

    // --- the frame: tabs, panels, preview -------------------------------------------------

    buildFrame() {
      const row = this.textarea.closest(".form-row") || this.textarea.parentElement;
      const djangoErrors = row.querySelector(".errorlist");
      this.builderTab = h("button", { type: "button", role: "tab", class: "sb-tab", "aria-selected": "true",
        onclick: () => this.showTab("builder") }, this.t("tab_builder"));
      this.jsonTab = h("button", { type: "button", role: "tab", class: "sb-tab", "aria-selected": "false",
        onclick: () => this.showTab("json") }, this.t("tab_json"));
      this.builderPanel = h("div", { class: "sb-panel sb-builder", role: "tabpanel" });
      this.parseError = h("p", { class: "sb-parse-error", role: "alert", hidden: true });
      this.jsonPanel = h("div", { class: "sb-panel sb-json", role: "tabpanel", hidden: true },
        h("p", { class: "sb-help" }, this.t("json_help")), this.parseError);
      this.countNumber = h("span", { class: "sb-count-number" }, "–");
      this.countText = h("span", { class: "sb-count-text" }, this.t("contacts"));
      this.status = h("p", { class: "sb-status" });
      this.errorList = h("ul", { class: "sb-error-list", hidden: true });
      this.sampleList = h("ol", { class: "sb-sample" });
      this.sampleTitle = h("h3", { class: "sb-sample-title", hidden: true }, this.t("sample_title"));
      this.preview = h("aside", { class: "sb-preview", "aria-live": "polite", "aria-label": this.t("preview_title") },
        h("h2", { class: "sb-preview-title" }, this.t("preview_title")),
        h("p", { class: "sb-count" }, this.countNumber, " ", this.countText),
        this.status, this.errorList, this.sampleTitle, this.sampleList);
      this.root = h("div", { class: "sb" },
        h("div", { class: "sb-main" },
          djangoErrors,
          h("div", { class: "sb-tabs", role: "tablist" }, this.builderTab, this.jsonTab),
          this.builderPanel, this.jsonPanel),
        this.preview);
      row.replaceChildren(this.root);
      this.textarea.classList.add("sb-textarea");
      this.textarea.setAttribute("aria-label", this.t("tab_json"));
      this.textarea.setAttribute("spellcheck", "false");
      this.jsonPanel.insertBefore(this.textarea, this.parseError);
      this.textarea.addEventListener("input", () => this.loadFromTextarea({ initial: false }));
    }

    showTab(which) {
      const json = which === "json";
      this.jsonPanel.hidden = !json;
      this.builderPanel.hidden = json;
      this.jsonTab.setAttribute("aria-selected", String(json));
      this.builderTab.setAttribute("aria-selected", String(!json));
      if (json) this.textarea.focus();
    }

    // --- JSON <-> model -------------------------------------------------------------------

    loadFromTextarea({ initial }) {
      const text = this.textarea.value.trim();
      let value;
      try {
        value = text ? JSON.parse(text) : {};
      } catch (error) {
        this.parseError.textContent = this.t("json_parse_error").replace("%s", error.message);
        this.parseError.hidden = false;
        this.clearPreview(this.t("fix_json"));
        if (initial) this.showTab("json"); // the form came back with JSON that does not parse
        return;
      }
      this.parseError.hidden = true;
      if (isObject(value) && Object.keys(value).length === 0) {
        this.version = 1;
        this.model = this.newGroup("all");
        this.renderBuilder();
        if (initial) this.writeTextarea();
        this.schedulePreview();
        return;
      }
      if (!isObject(value) || !("root" in value)) {
        this.model = null;
        this.builderPanel.replaceChildren(h("p", { class: "sb-cannot-show" }, this.t("cannot_show")));
        this.schedulePreview();
        return;
      }
      this.version = value.version === undefined ? 1 : value.version;
      this.extra = Object.fromEntries(Object.entries(value).filter(([key]) => key !== "version" && key !== "root"));
      const root = this.parseNode(value.root);
      this.model = root.t === "group" ? root : { t: "group", mode: "all", negated: false, bare: true, children: [root] };
      this.renderBuilder();
      this.serialise();
      if (initial) this.writeTextarea();
      this.schedulePreview();
    }

    parseNode(node) {
      if (isObject(node)) {
        const keys = Object.keys(node);
        if (keys.length === 1 && (keys[0] === "all" || keys[0] === "any") && Array.isArray(node[keys[0]])) {
          return { t: "group", mode: keys[0], negated: false, bare: false, children: node[keys[0]].map((n) => this.parseNode(n)) };
        }
        if (keys.length === 1 && keys[0] === "not") {
          const inner = this.parseNode(node.not);
          if (inner.t === "group" && !inner.negated && !inner.bare) {
            inner.negated = true;
            return inner;
          }
          return { t: "group", mode: "all", negated: true, bare: true, children: [inner] };
        }
        const type = CONDITION_TYPES.find((candidate) => candidate in node);
        if (type) return { t: "cond", type, node: { ...node }, hint: {} };
      }
      return { t: "raw", node };
    }

    serialise() {
      const ser = (x, path) => {
        x.path = path;
        if (x.t === "raw") return x.node;
        if (x.t === "cond") return ordered(x.type, x.node);
        if (x.bare && x.children.length === 1) {
          if (x.negated) return { not: ser(x.children[0], `${path}.not`) };
          return ser(x.children[0], path);
        }
        const inner = x.negated ? `${path}.not` : path;
        const group = { [x.mode]: x.children.map((child, i) => ser(child, `${inner}.${x.mode}.${i}`)) };
        return x.negated ? { not: group } : group;
      };
      const root = ser(this.model, "root");
      this.updatePaths(this.model);
      return { version: this.version, ...this.extra, root };
    }

    updatePaths(x) {
      if (x.el) x.el.dataset.path = x.path;
      if (x.t === "group") x.children.forEach((child) => this.updatePaths(child));
      if (x.t === "cond" && x.filterEls) {
        x.filterEls.forEach((el, i) => { el.dataset.path = `${x.path}.where.${i}`; });
      }
    }

    writeTextarea() {
      if (!this.model) return;
      this.textarea.value = JSON.stringify(this.serialise(), null, 2);
    }

    changed() {
      this.writeTextarea();
      this.schedulePreview();
    }

    isEmpty() {
      // Rules the builder cannot show still go to the server, which names what is wrong.
      return Boolean(this.model) && this.model.children.length === 0;
    }

    // --- defaults -------------------------------------------------------------------------

    newGroup(mode) {
      return { t: "group", mode, negated: false, bare: false, children: [] };
    }

    defaultNode(type) {
      const o = this.options;
      const others = o.segments.filter((s) => String(s.value) !== String(this.config.segmentId));
      switch (type) {
        case "field": return { field: o.fields[0].value, op: "eq", value: "" };
        case "attribute": return { attribute: "", op: "eq", value: "" };
        case "event": return { event: o.event_types[0].value, aggregate: "count", op: "gte", value: 1 };
        case "consent": return { consent: o.channels[0].value, status: "granted" };
        case "identity": return { identity: o.identity_kinds[0].value, present: true };
        case "score": return { score: o.scores[0] || "", op: "gte", value: 0 };
        case "segment": return { segment: others.length ? others[0].value : null };
        default: return {};
      }
    }

    newCondition(type) {
      return { t: "cond", type, node: this.defaultNode(type), hint: {} };
    }

    // --- rendering ------------------------------------------------------------------------

    renderBuilder() {
      this.builderPanel.replaceChildren(this.renderGroup(this.model, null));
    }

    renderGroup(group, parent) {
      const notToggle = h("button", {
        type: "button", class: "sb-not", "aria-pressed": String(group.negated), title: this.t("not_title"),
        onclick: () => {
          group.negated = !group.negated;
          notToggle.setAttribute("aria-pressed", String(group.negated));
          el.classList.toggle("sb-negated", group.negated);
          prefix.textContent = this.t(group.negated ? "group_prefix_not" : "group_prefix");
          this.changed();
        },
      }, this.t("not"));
      const prefix = h("span", { class: "sb-group-prefix" }, this.t(group.negated ? "group_prefix_not" : "group_prefix"));
      const mode = this.select(
        [["all", this.t("match_all")], ["any", this.t("match_any")]], group.mode,
        (value) => { group.mode = value; this.rerender(group, parent); this.changed(); },
        { label: this.t("match"), key: "mode" });
      const head = h("div", { class: "sb-group-head" }, notToggle, prefix, mode,
        parent && h("button", { type: "button", class: "sb-remove", title: this.t("remove_group"), "aria-label": this.t("remove_group"),
          onclick: () => this.remove(group, parent) }, "×"));
      const children = h("div", { class: "sb-children" });
      group.children.forEach((child, i) => {
        if (i > 0) children.append(h("div", { class: "sb-joiner", "aria-hidden": "true" }, this.t(group.mode === "all" ? "and" : "or")));
        children.append(child.t === "group" ? this.renderGroup(child, group) : this.renderCondition(child, group));
      });
      if (!group.children.length) children.append(h("p", { class: "sb-empty" }, this.t("empty_group")));
      const foot = h("div", { class: "sb-group-foot" },
        h("button", { type: "button", class: "sb-add sb-add-condition", onclick: () => this.add(group, this.newCondition(this.lastType || "consent")) }, this.t("add_condition")),
        h("button", { type: "button", class: "sb-add sb-add-group", onclick: () => {
          const sub = this.newGroup(group.mode === "all" ? "any" : "all");
          sub.children.push(this.newCondition(this.lastType || "consent"));
          this.add(group, sub);
        } }, this.t("add_group")));
      const el = h("div", { class: `sb-group${group.negated ? " sb-negated" : ""}${parent ? "" : " sb-root"}`, role: "group",
        "aria-label": this.t("group") }, head, h("div", { class: "sb-errors" }), children, foot);
      group.el = el;
      return el;
    }

    add(group, child) {
      group.children.push(child);
      this.rerender(group, null, true);
      this.changed();
      const focusable = child.el && child.el.querySelector("select, input");
      if (focusable) focusable.focus();
    }

    remove(child, parent) {
      parent.children.splice(parent.children.indexOf(child), 1);
      this.rerender(parent, null, true);
      this.changed();
    }

    rerender(x, parent, keepParentLookup) {
      // Groups re-render whole (their joiners and children change); a condition its own row.
      const old = x.el;
      if (!old) return this.renderBuilder();
      let fresh;
      if (x.t === "group") {
        const parentGroup = keepParentLookup ? this.parentOf(x) : parent;
        fresh = this.renderGroup(x, parentGroup);
      } else {
        fresh = this.renderCondition(x, parent);
      }
      old.replaceWith(fresh);
      this.serialise();
      return fresh;
    }

    parentOf(target, group = this.model) {
      if (!group || group.t !== "group") return null;
      for (const child of group.children) {
        if (child === target) return group;
        const found = this.parentOf(target, child);
        if (found) return found;
      }
      return null;
    }

    renderCondition(cond, parent) {
      if (cond.t === "raw") {
        const el = h("div", { class: "sb-cond sb-raw" },
          h("div", { class: "sb-line" },
            h("code", {}, JSON.stringify(cond.node)),
            h("span", { class: "sb-help" }, this.t("raw_node")),
            h("button", { type: "button", class: "sb-remove", "aria-label": this.t("remove_condition"), title: this.t("remove_condition"),
              onclick: () => this.remove(cond, parent || this.parentOf(cond)) }, "×")),
          h("div", { class: "sb-errors" }));
        cond.el = el;
        return el;
      }
      const typeSelect = this.select(
        CONDITION_TYPES.map((type) => [type, this.t(`type_${type}`)]), cond.type,
        (type) => {
          cond.type = type;
          cond.node = this.defaultNode(type);
          cond.hint = {};
          this.lastType = type;
          this.rerender(cond, parent);
          this.changed();
        },
        { label: this.t("condition_type"), cls: "sb-type" });
      const line = h("div", { class: "sb-line" }, typeSelect);
      const extra = h("div", { class: "sb-cond-extra" });
      const redraw = () => { this.rerender(cond, parent); this.changed(); };
      this[`controls_${cond.type}`](cond, line, extra, redraw);
      line.append(h("button", { type: "button", class: "sb-remove", "aria-label": this.t("remove_condition"), title: this.t("remove_condition"),
        onclick: () => this.remove(cond, parent || this.parentOf(cond)) }, "×"));
      const el = h("div", { class: `sb-cond sb-cond-${cond.type}`, role: "group", "aria-label": this.t(`type_${cond.type}`) },
        line, extra, h("div", { class: "sb-errors" }));
      cond.el = el;
      return el;
    }

    // --- controls per condition type -----------------------------------------------------

    controls_field(cond, line, extra, redraw) {
      const node = cond.node;
      const fieldKind = (name) => (this.options.fields.find((f) => f.value === name) || {}).type || "text";
      line.append(this.select(this.options.fields.map((f) => [f.value, f.label]), node.field, (value) => {
        const before = fieldKind(node.field);
        node.field = value;
        if (fieldKind(value) !== before) {
          node.op = FIELD_OPS[fieldKind(value)][0];
          this.resetValue(node, fieldKind(value));
        }
        redraw();
      }, { label: this.t("field"), key: "field" }));
      this.comparison(cond, line, fieldKind(node.field), FIELD_OPS[fieldKind(node.field)], redraw);
    }

    attributeKind(cond) {
      const node = cond.node;
      return cond.hint.kind || this.attributeTypes[node.attribute] || kindOfValue(node.value) || "text";
    }

    controls_attribute(cond, line, extra, redraw) {
      const node = cond.node;
      const key = h("input", {
        type: "text", class: "sb-key", value: node.attribute || "", list: this.datalist(this.options.attributes.map((a) => a.key)),
        placeholder: this.t("attribute_placeholder"), "aria-label": this.t("attribute"), dataset: { key: "attribute" },
        oninput: () => { node.attribute = key.value.trim(); this.changed(); },
        onchange: () => {
          const known = this.attributeTypes[node.attribute];
          if (known && !cond.hint.kind && known !== kindOfValue(node.value)) {
            cond.hint.kind = known;
            if (!OPS_BY_KIND[known].includes(node.op)) node.op = OPS_BY_KIND[known][0];
            this.resetValue(node, known);
            redraw();
          }
        },
      });
      line.append(key);
      const kind = this.attributeKind(cond);
      const known = this.options.attributes.find((a) => a.key === node.attribute);
      this.comparison(cond, line, kind, OPS_BY_KIND[kind], redraw, known ? known.values : []);
      line.append(this.kindSelect(kind, (value) => {
        cond.hint.kind = value;
        if (!OPS_BY_KIND[value].includes(node.op)) node.op = OPS_BY_KIND[value][0];
        this.resetValue(node, value);
        redraw();
      }));
    }

    controls_event(cond, line, extra, redraw) {
      const node = cond.node;
      const props = this.options.event_properties[node.event] || [];
      line.append(this.select(this.options.event_types.map((e) => [e.value, e.label]), node.event, (value) => {
        node.event = value;
        redraw();
      }, { label: this.t("event_type"), key: "event" }));
      const aggregate = node.aggregate || "count";
      line.append(this.select(AGGREGATES.map((a) => [a, this.t(`aggregate_${a}`)]), aggregate, (value) => {
        node.aggregate = value;
        if (value === "count") delete node.property;
        redraw();
      }, { label: this.t("aggregate"), key: "aggregate" }));
      if (aggregate !== "count") {
        const numeric = props.filter((p) => p.type === "number").map((p) => p.key);
        if (node.property && !numeric.includes(node.property)) numeric.push(node.property);
        line.append(h("span", { class: "sb-word" }, this.t("of")));
        line.append(this.select([["", this.t("event_value")], ...numeric.map((p) => [p, p])], node.property || "", (value) => {
          if (value) node.property = value;
          else delete node.property;
          this.changed();
        }, { label: this.t("property"), key: "property" }));
      }
      const aggregateOps = node.op && !AGGREGATE_OPS.includes(node.op) ? [...AGGREGATE_OPS, node.op] : AGGREGATE_OPS;
      line.append(this.select(aggregateOps.map((op) => [op, this.t(`agg_${op}`)]), node.op || "gte", (value) => {
        node.op = value;
        this.changed();
      }, { label: this.t("comparison"), key: "op" }));
      line.append(this.numberInput(node.value, (value) => this.setOrDelete(node, "value", value),
        { label: this.t("value"), key: "value", min: aggregate === "count" ? 0 : null, step: aggregate === "count" ? 1 : "any" }));
      if (aggregate === "count") line.append(h("span", { class: "sb-word" }, this.t("times")));
      line.append(h("span", { class: "sb-word" }, this.t("in_the_last")));
      line.append(this.numberInput(node.within_days, (value) => this.setOrDelete(node, "within_days", value),
        { label: this.t("within_days"), key: "within_days", min: 1, step: 1, placeholder: this.t("all_time"), cls: "sb-days" }));
      line.append(h("span", { class: "sb-word" }, this.t("days")));

      cond.filterEls = [];
      const filters = Array.isArray(node.where) ? node.where : [];
      const list = h("div", { class: "sb-where" });
      filters.forEach((filter, i) => {
        const row = this.renderFilter(cond, filter, i, props, redraw);
        cond.filterEls.push(row);
        list.append(row);
      });
      list.append(h("button", { type: "button", class: "sb-add sb-add-filter", onclick: () => {
        node.where = [...filters, { property: props.length ? props[0].key : "", op: "eq", value: "" }];
        redraw();
      } }, this.t("add_filter")));
      extra.append(list);
    }

    renderFilter(cond, filter, index, props, redraw) {
      const propertyType = (name) => (props.find((p) => p.key === name) || {}).type;
      const kind = (cond.hint.filterKinds && cond.hint.filterKinds[index]) || propertyType(filter.property) || kindOfValue(filter.value) || "text";
      const ops = WHERE_OPS.filter((op) => OPS_BY_KIND[kind].includes(op));
      const row = h("div", { class: "sb-filter", role: "group", "aria-label": this.t("property_filter") },
        h("span", { class: "sb-word" }, this.t(index === 0 ? "where" : "and")));
      const property = h("input", {
        type: "text", class: "sb-key", value: filter.property || "", list: this.datalist(props.map((p) => p.key)),
        "aria-label": this.t("property"), placeholder: this.t("property_placeholder"), dataset: { key: "property" },
        oninput: () => { filter.property = property.value.trim(); this.changed(); },
        onchange: () => {
          const known = propertyType(filter.property);
          if (known && known !== kind) {
            this.setFilterKind(cond, index, known, filter);
            redraw();
          }
        },
      });
      row.append(property);
      row.append(this.select(ops.map((op) => [op, this.opLabel(op, kind)]), filter.op, (value) => {
        const shapeChanged = valueShape(value) !== valueShape(filter.op);
        filter.op = value;
        if (shapeChanged) this.resetValue(filter, kind);
        redraw();
      }, { label: this.t("comparison"), key: "op" }));
      const known = props.find((p) => p.key === filter.property);
      row.append(...this.valueEditor(filter, kind, known ? known.values : []));
      row.append(this.kindSelect(kind, (value) => {
        this.setFilterKind(cond, index, value, filter);
        redraw();
      }));
      row.append(h("button", { type: "button", class: "sb-remove", "aria-label": this.t("remove_filter"), title: this.t("remove_filter"),
        onclick: () => {
          cond.node.where.splice(index, 1);
          if (!cond.node.where.length) delete cond.node.where;
          if (cond.hint.filterKinds) cond.hint.filterKinds.splice(index, 1);
          redraw();
        } }, "×"));
      return row;
    }

    setFilterKind(cond, index, kind, filter) {
      cond.hint.filterKinds = cond.hint.filterKinds || [];
      cond.hint.filterKinds[index] = kind;
      if (!OPS_BY_KIND[kind].includes(filter.op) || !WHERE_OPS.includes(filter.op)) filter.op = "eq";
      this.resetValue(filter, kind);
    }

    controls_consent(cond, line) {
      const node = cond.node;
      line.append(h("span", { class: "sb-word" }, this.t("consent_for")));
      line.append(this.select(this.options.channels.map((c) => [c.value, c.label]), node.consent, (value) => {
        node.consent = value;
        this.changed();
      }, { label: this.t("channel"), key: "consent" }));
      line.append(h("span", { class: "sb-word" }, this.t("is")));
      line.append(this.select(["granted", "withdrawn", "unknown"].map((s) => [s, this.t(`consent_${s}`)]), node.status, (value) => {
        node.status = value;
        this.changed();
      }, { label: this.t("consent_status"), key: "status" }));
    }

    controls_identity(cond, line) {
      const node = cond.node;
      line.append(this.select([["true", this.t("has")], ["false", this.t("has_no")]], String(node.present !== false), (value) => {
        node.present = value === "true";
        this.changed();
      }, { label: this.t("present"), key: "present" }));
      line.append(this.select(this.options.identity_kinds.map((k) => [k.value, k.label]), node.identity, (value) => {
        node.identity = value;
        this.changed();
      }, { label: this.t("identity_kind"), key: "identity" }));
    }

    controls_score(cond, line, extra, redraw) {
      const node = cond.node;
      const name = h("input", {
        type: "text", class: "sb-key", value: node.score || "", list: this.datalist(this.options.scores),
        placeholder: this.t("score_placeholder"), "aria-label": this.t("score"), dataset: { key: "score" },
        oninput: () => { node.score = name.value.trim(); this.changed(); },
      });
      line.append(name);
      this.comparison(cond, line, "number", SCORE_OPS, redraw);
    }

    controls_segment(cond, line) {
      const node = cond.node;
      const others = this.options.segments.filter((s) => String(s.value) !== String(this.config.segmentId));
      const choices = others.map((s) => [String(s.value), s.label]);
      if (node.segment !== null && node.segment !== undefined && !choices.some(([v]) => v === String(node.segment))) {
        choices.push([String(node.segment), `#${node.segment}`]);
      }
      line.append(h("span", { class: "sb-word" }, this.t("member_of")));
      if (!choices.length) {
        line.append(h("span", { class: "sb-help" }, this.t("no_segments")));
        return;
      }
      line.append(this.select(choices, String(node.segment), (value) => {
        node.segment = Number(value);
        this.changed();
      }, { label: this.t("type_segment"), key: "segment" }));
    }

    // --- shared pieces ---------------------------------------------------------------------

    comparison(cond, line, kind, ops, redraw, suggestions = []) {
      const node = cond.node;
      if (node.op && !ops.includes(node.op)) ops = [...ops, node.op];
      line.append(this.select(ops.map((op) => [op, this.opLabel(op, kind)]), node.op, (value) => {
        const shapeChanged = valueShape(value) !== valueShape(node.op);
        node.op = value;
        if (shapeChanged) this.resetValue(node, kind);
        redraw();
      }, { label: this.t("comparison"), key: "op" }));
      line.append(...this.valueEditor(node, kind, suggestions));
    }

    opLabel(op, kind) {
      if (kind === "date" && this.L[`op_${op}_date`]) return this.L[`op_${op}_date`];
      return this.t(`op_${op}`);
    }

    resetValue(node, kind) {
      const shape = valueShape(node.op);
      if (shape === "none") delete node.value;
      else if (shape === "list") node.value = [];
      else if (shape === "between") node.value = [null, null];
      else if (shape === "days") node.value = 30;
      else if (kind === "boolean") node.value = true;
      else if (kind === "number") node.value = 0;
      else node.value = "";
    }

    valueEditor(node, kind, suggestions = []) {
      const shape = valueShape(node.op);
      const set = (value) => this.setOrDelete(node, "value", value);
      if (shape === "none") {
        delete node.value;
        return [];
      }
      if (shape === "days") {
        return [this.numberInput(node.value, set, { label: this.t("value"), key: "value", min: 0, step: 1, cls: "sb-days" }),
          h("span", { class: "sb-word" }, this.t(node.op === "anniversary_within_days" ? "days" : "days_ago"))];
      }
      if (shape === "list") {
        const current = Array.isArray(node.value) ? node.value.join(", ") : "";
        const input = h("input", {
          type: "text", class: "sb-list", value: current, placeholder: this.t("list_placeholder"), "aria-label": this.t("value"),
          dataset: { key: "value" },
          oninput: () => {
            const items = input.value.split(",").map((s) => s.trim()).filter(Boolean);
            const numeric = kind === "number" && items.every((s) => !Number.isNaN(Number(s)));
            node.value = numeric ? items.map(Number) : items;
            this.changed();
          },
        });
        return [input];
      }
      if (shape === "between") {
        const pair = Array.isArray(node.value) ? [...node.value] : [null, null];
        const one = (i, label) => this.scalarInput(kind === "date" ? "date" : "number", pair[i], (value) => {
          pair[i] = value === undefined ? null : value;
          node.value = [...pair];
          this.changed();
        }, label, `value.${i}`);
        return [one(0, this.t("low")), h("span", { class: "sb-word" }, this.t("and")), one(1, this.t("high"))];
      }
      return [this.scalarInput(kind, node.value, set, this.t("value"), "value", suggestions)];
    }

    scalarInput(kind, value, onChange, label, key, suggestions = []) {
      if (kind === "boolean") {
        return this.select([["true", this.t("yes")], ["false", this.t("no")]], String(value !== false), (v) => onChange(v === "true"),
          { label, key });
      }
      if (kind === "number") return this.numberInput(value, onChange, { label, key, step: "any" });
      const input = h("input", {
        type: kind === "date" ? "date" : "text", class: "sb-value", value: value === null || value === undefined ? "" : String(value),
        "aria-label": label, dataset: { key }, list: kind === "text" && suggestions.length ? this.datalist(suggestions) : null,
        oninput: () => onChange(input.value),
      });
      return input;
    }

    numberInput(value, onChange, { label, key, min, step, placeholder, cls }) {
      const input = h("input", {
        type: "number", class: cls || "sb-number", value: value === null || value === undefined ? "" : String(value),
        min, step, placeholder, "aria-label": label, dataset: { key },
        oninput: () => onChange(input.value === "" ? undefined : Number(input.value)),
      });
      return input;
    }

    setOrDelete(node, key, value) {
      if (value === undefined || (typeof value === "number" && Number.isNaN(value))) delete node[key];
      else node[key] = value;
      this.changed();
    }

    kindSelect(kind, onChange) {
      return this.select(["text", "number", "date", "boolean"].map((k) => [k, this.t(`kind_${k}`)]), kind, onChange,
        { label: this.t("value_type"), cls: "sb-kind" });
    }

    select(choices, current, onChange, { label, key, cls } = {}) {
      const el = h("select", { class: cls || "sb-select", "aria-label": label, dataset: key ? { key } : null,
        onchange: () => onChange(el.value) },
      choices.map(([value, text]) => h("option", { value: String(value) }, text)));
      if (current !== undefined && current !== null) el.value = String(current);
      return el;
    }

    datalist(values) {
      const id = `sb-list-${++this.listIds}`;
      const list = h("datalist", { id }, values.map((value) => h("option", { value })));
      this.root.append(list);
      return id;
    }

    // --- preview --------------------------------------------------------------------------

    schedulePreview() {
      clearTimeout(this.timer);
      if (this.isEmpty()) {
        this.seq += 1;
        this.clearPreview(this.t("empty_rules"));
        return;
      }
      this.status.textContent = this.t("counting");
      this.preview.classList.add("sb-busy");
      this.timer = setTimeout(() => this.fetchPreview(), DEBOUNCE_MS);
    }

    clearPreview(message) {
      this.preview.classList.remove("sb-busy");
      this.countNumber.textContent = "–";
      this.countText.textContent = this.t("contacts");
      this.status.textContent = message;
      this.sampleList.replaceChildren();
      this.sampleTitle.hidden = true;
      this.errorList.hidden = true;
      this.clearInlineErrors();
    }

    async fetchPreview() {
      const seq = ++this.seq;
      const form = this.textarea.form;
      const body = new FormData();
      body.append("rules", this.textarea.value);
      const token = form && form.querySelector("input[name=csrfmiddlewaretoken]");
      let data;
      try {
        const response = await fetch(this.config.previewUrl, {
          method: "POST", body, credentials: "same-origin",
          headers: { "X-CSRFToken": token ? token.value : "", Accept: "application/json" },
        });
        data = await response.json();
      } catch (error) {
        if (seq === this.seq) this.clearPreview(this.t("request_failed").replace("%s", error.message));
        return;
      }
      if (seq !== this.seq) return; // an answer to rules that have changed since
      this.preview.classList.remove("sb-busy");
      this.showErrors(data.errors || []);
      if (data.errors && data.errors.length) {
        this.countNumber.textContent = "–";
        this.countText.textContent = this.t("contacts");
        this.status.textContent = this.t("fix_errors");
        this.sampleList.replaceChildren();
        this.sampleTitle.hidden = true;
        return;
      }
      this.countNumber.textContent = new Intl.NumberFormat(document.documentElement.lang || undefined).format(data.count);
      this.countText.textContent = data.count_label || this.t("contacts");
      this.status.textContent = this.t("up_to_date");
      this.sampleTitle.hidden = !data.sample.length;
      this.sampleList.replaceChildren(...data.sample.map((contact) => h("li", {},
        h("a", { href: contact.url, title: contact.contact_key, target: "_blank", rel: "noopener" }, contact.name))));
      if (!data.sample.length) this.status.textContent = this.t("nobody");
    }

    clearInlineErrors() {
      this.root.querySelectorAll(".sb-errors").forEach((el) => el.replaceChildren());
      this.root.querySelectorAll(".sb-invalid").forEach((el) => {
        el.classList.remove("sb-invalid");
        el.removeAttribute("aria-invalid");
      });
      this.root.querySelectorAll(".sb-has-error").forEach((el) => el.classList.remove("sb-has-error"));
    }

    showErrors(errors) {
      this.clearInlineErrors();
      this.errorList.replaceChildren(...errors.map((e) => h("li", {}, e.message)));
      this.errorList.hidden = !errors.length;
      const nodes = [...this.builderPanel.querySelectorAll("[data-path]")];
      for (const error of errors) {
        const path = error.path || "";
        let best = null;
        for (const el of nodes) {
          const p = el.dataset.path;
          if ((path === p || path.startsWith(`${p}.`)) && (!best || p.length >= best.dataset.path.length)) best = el;
        }
        if (!best) continue;
        best.classList.add("sb-has-error");
        const rest = path.slice(best.dataset.path.length + 1);
        const line = best.classList.contains("sb-filter") ? best : best.querySelector(":scope > .sb-line, :scope > .sb-group-head");
        const control = rest && line && (line.querySelector(`[data-key="${CSS.escape(rest)}"]`)
          || line.querySelector(`[data-key="${CSS.escape(rest.split(".")[0])}"]`));
        if (control) {
          control.classList.add("sb-invalid");
          control.setAttribute("aria-invalid", "true");
        }
        const box = best.classList.contains("sb-filter") ? best : best.querySelector(":scope > .sb-errors");
        (box || best).append(h("p", { class: "sb-error" }, error.message));
      }
    }
  }

  function toggleByKind(kindSelect) {
    const dynamic = kindSelect.value === "dynamic";
    document.querySelectorAll(".segment-dynamic-only").forEach((el) => { el.hidden = !dynamic; });
    document.querySelectorAll(".segment-static-only").forEach((el) => { el.hidden = dynamic; });
  }

  function start() {
    const config = readJSONScript("segment-builder-config");
    const textarea = document.getElementById("id_rules");
    if (!config || !textarea) return;
    const builder = new SegmentBuilder(textarea, config,
      readJSONScript("segment-builder-labels"), readJSONScript("segment-builder-options"));
    const kindSelect = document.getElementById("id_kind");
    if (kindSelect) {
      kindSelect.addEventListener("change", () => toggleByKind(kindSelect));
      toggleByKind(kindSelect);
    }
    window.dialoogSegmentBuilder = builder; // for the curious in the console
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
