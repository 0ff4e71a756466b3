"""auditlog"""
