from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from dialoog.api.errors import ErrorResponseSerializer

ERROR_DESCRIPTIONS = {
    "400": "The request body is not valid: each error names the field and the reason.",
    "401": "Not authenticated: log in or send `Authorization: Token <key>`.",
    "403": "Your role does not allow this.",
    "404": "No such object.",
    "409": "The object is still in use (e.g. a goal that campaigns serve): nothing was deleted.",
}


class AutoSchema(SpectacularAutoSchema):
    """Documents the error responses every endpoint can give, in the shape the handler uses."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = ["401", "403"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("400")
        if "{" in self.path:
            codes.append("404")
        if self.method == "DELETE":
            codes.append("409")
        for code in codes:
            if code not in responses:
                response = self._get_response_for_code(ErrorResponseSerializer, code, direction=direction)
                response["description"] = ERROR_DESCRIPTIONS[code]
                responses[code] = response
        return responses
